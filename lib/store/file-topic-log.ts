import { join } from 'node:path';
import { LogBusError, storageError } from '../errors.js';
import { validateAppend } from './append-validation.js';
import { BATCH_HEADER, type BatchInfo, MAX_BATCH_BYTES, checkBatch, decodeBatch, encodeBatch } from './batch-format.js';
import { readFully, writeFully } from './io.js';
import { INDEX_ENTRY, INDEX_INTERVAL, SegmentIndex } from './segment-index.js';
import { type LogIOOptions, type Segment, newSegment, openSealed, rebuildSealed, recoverActive, segName } from './segment.js';
import type { AppendRecord, AppendResult, LogRecord, TopicLog, TopicLogConfig } from './types.js';

export type { LogIOOptions } from './segment.js';

/** Slabs start small (idle topics stay cheap) and double up to this. */
const SLAB_BYTES = 1024 * 1024;
const FIRST_SLAB_BYTES = 64 * 1024;
const READ_WINDOW = 1024 * 1024;
/** Appended but not yet written: past this the disk is not keeping up and appends are refused. */
export const MAX_PENDING_BYTES = 256 * 1024 * 1024;
/** One read returns at most this many records, whatever it asks for. */
export const MAX_READ_RECORDS = 100_000;
/** Index entries written together (one write per ~256 KiB of log, not one per flush). */
const INDEX_PERSIST_BATCH = 64;
const MAX_READ_WINDOW = 8 * 1024 * 1024;
/**
 * Preallocation (fsync 'always'): zeros are kept written and synced ahead of
 * the active segment's end, up to as many bytes as it holds, between these
 * bounds (an idle topic stays small; at most ~PREALLOC_MAX of zeros per topic),
 * and never past segmentBytes. fdatasync after a write that grows the file
 * must also commit the new size (a journal commit), which costs several times
 * a data-only sync: with the space already there, a commit syncs data only.
 */
const PREALLOC_MIN = 64 * 1024;
const PREALLOC_MAX = 4 * 1024 * 1024;

/** Batches encoded contiguously in one slab, all for one segment: one write. */
interface Chunk {
  seg: Segment;
  buf: Buffer;
  start: number;
  end: number;
  /** Position in the segment file of buf[start]. */
  segPos: number;
  firstOffset: number;
  endOffset: number;
  batchBase: number[];
  batchPos: number[];
}

interface Group {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * One topic's append-only log on disk: `<dir>/<base>.log` segments with a
 * `<base>.index` each (see segment.ts for open and recovery, segment-index.ts
 * and batch-format.ts for the formats).
 *
 * Appends are encoded synchronously into a shared slab and written by a single
 * flush loop: every append made while a write(+fsync) is in progress goes into
 * the next single write(+fdatasync) — group commit. All appends of one flush
 * share one `durable` promise.
 *
 * Damage policy: a torn tail of the active segment (the only one being
 * written) is cut at the last whole batch on open, with a warning. Damage in a
 * sealed segment is never cut and never served: open() logs an error, and a
 * read that reaches the damaged batch rejects with CORRUPT naming the file, the
 * byte position and the offset to read from to skip it; records before it and
 * in later segments stay readable.
 */
export class FileTopicLog implements TopicLog {
  private segments: Segment[] = [];
  private next = 0;
  private visibleNext = 0;
  private total = 0;
  private failed: LogBusError | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  private slab: Buffer = Buffer.alloc(0);
  private slabPos = 0;
  private nextSlab = FIRST_SLAB_BYTES;
  private pending: Chunk[] = [];
  private cur: Chunk | null = null;
  private group: Group | null = null;
  private lastGroup: Promise<void> | null = null;
  private flushing = false;
  private pendingBytes = 0;
  private flushScheduled = false;
  private syncRequested = false;
  private dirty = false;
  private timer: NodeJS.Timeout | null = null;

  private cache: Chunk[] = [];
  private cacheSize = 0;

  private constructor(
    readonly name: string,
    private readonly dir: string,
    private config: TopicLogConfig,
    private readonly o: LogIOOptions,
  ) {}

  get earliestOffset(): number {
    return this.segments[0].base;
  }
  get nextOffset(): number {
    return this.next;
  }
  get sizeBytes(): number {
    return this.total;
  }

  /** Later openTopic calls may change limits and retention. */
  updateConfig(config: TopicLogConfig): void {
    this.config = config;
  }

  // ---------------------------------------------------------------- open

  static async open(name: string, dir: string, config: TopicLogConfig, o: LogIOOptions): Promise<FileTopicLog> {
    const log = new FileTopicLog(name, dir, config, o);
    try {
      await log.load();
    } catch (e) {
      await log.closeFds();
      throw storageError(`opening the log of '${name}' in ${dir}`, e);
    }
    if (o.fsync === 'interval') {
      log.timer = setInterval(() => log.requestSync(), o.fsyncIntervalMs);
      log.timer.unref();
    }
    return log;
  }

  private async load(): Promise<void> {
    const io = this.o.io;
    await io.mkdir(this.dir);
    const files = await io.readdir(this.dir);
    const bases = files
      .map(f => /^(\d{20})\.log$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map(m => Number(m[1]))
      .sort((a, b) => a - b);
    const known = new Set(bases.map(b => segName(b)));
    for (const f of files) {
      // Index files without their segment (e.g. a crash during retention) are leftovers.
      const m = /^(\d{20})\.index$/.exec(f);
      if (m && !known.has(m[1])) await io.unlink(join(this.dir, f));
    }
    if (bases.length === 0) {
      const seg = newSegment(this.dir, 0);
      seg.index = new SegmentIndex();
      // Listed before its files are opened, so that closeFds() closes whatever did open when a later step fails (e.g. EMFILE).
      this.segments.push(seg);
      await this.createFiles(seg);
      await io.fsyncDir(this.dir);
    } else {
      for (let i = 0; i < bases.length; i++) {
        const seg = newSegment(this.dir, bases[i]);
        seg.onDisk = true;
        this.segments.push(seg);
        if (i < bases.length - 1) {
          seg.sealed = true;
          seg.finalized = true;
          seg.next = bases[i + 1];
          await openSealed(this.o, seg);
        } else {
          await this.o.fds.reserve(2);
          seg.slots = 2;
          await recoverActive(this.o, seg);
          this.holdFiles(seg);
        }
        this.total += seg.size;
      }
    }
    const active = this.active();
    this.next = active.next;
    this.visibleNext = active.next;
  }

  private active(): Segment {
    return this.segments[this.segments.length - 1];
  }

  // ------------------------------------------------------ segment files

  /*
   * A segment's log and index files stay open while it can be written
   * (active, or sealed and not yet finalized), but only as long as the
   * store's fd cap allows (fd-pool.ts): when the pool needs room it closes
   * the files of the least recently used idle segments, and they are opened
   * again ('r+': they exist, nothing is truncated) when next needed. Closing
   * an fd changes nothing on disk: sizes, preallocated zeros and index
   * entries stay as they were, and the Segment fields describing them too.
   *
   * Idle means none of the log's file I/O can be in flight: no flush loop
   * running or scheduled (so no write, fdatasync, preallocation or finalize),
   * not closing, and with fsync 'interval' no written but unsynced bytes (a
   * writeback error must reach the fd whose fdatasync vouches for them).
   * Reads open their own short-lived fd, reserved in the pool too.
   */

  private filesIdle(): boolean {
    if (this.flushing || this.flushScheduled || this.closing) return false;
    return !(this.o.fsync === 'interval' && this.dirty && !this.failed);
  }

  /** Creates a new segment's files (its first write, or a new topic). */
  private async createFiles(seg: Segment): Promise<void> {
    await this.o.fds.reserve(2);
    seg.slots = 2;
    seg.fd = await this.o.io.open(seg.logPath, 'w+');
    seg.indexFd = await this.o.io.open(seg.indexPath, 'w+');
    seg.onDisk = true;
    this.holdFiles(seg);
  }

  /** Makes sure an existing segment's files are open (reopening them if the fd cap closed them). */
  private async openFiles(seg: Segment): Promise<void> {
    if (seg.fd >= 0 && seg.indexFd >= 0 && !seg.evicting) {
      this.o.fds.touch(seg);
      return;
    }
    seg.opening ??= this.reopenFiles(seg).finally(() => {
      seg.opening = null;
    });
    return seg.opening;
  }

  private async reopenFiles(seg: Segment): Promise<void> {
    while (seg.evicting) await seg.evicting;
    if (seg.fd >= 0 && seg.indexFd >= 0) return;
    await this.o.fds.reserve(2);
    seg.slots = 2;
    try {
      seg.fd = await this.o.io.open(seg.logPath, 'r+');
      seg.indexFd = await this.o.io.open(seg.indexPath, 'r+');
    } catch (e) {
      await this.closeFiles(seg);
      throw e;
    }
    this.holdFiles(seg);
  }

  private holdFiles(seg: Segment): void {
    this.o.fds.hold(seg, seg.slots, {
      canClose: () => this.filesIdle(),
      closeFiles: () => this.evictFiles(seg),
    });
  }

  /** The pool's request (the fd cap): close now, reopen when needed. The pool counts them free. */
  private evictFiles(seg: Segment): Promise<void> {
    const fds = [seg.fd, seg.indexFd];
    seg.fd = seg.indexFd = -1;
    seg.slots = 0;
    const closing = (async () => {
      for (const fd of fds) if (fd >= 0) await this.o.io.close(fd).catch(() => {});
    })();
    seg.evicting = closing.finally(() => {
      seg.evicting = null;
    });
    return seg.evicting;
  }

  /** Closes a segment's files for good (finalized, log closed, or a failed open) and returns its fds to the pool. */
  private async closeFiles(seg: Segment, strict = false): Promise<void> {
    this.o.fds.forget(seg);
    while (seg.evicting) await seg.evicting;
    const fds = [seg.fd, seg.indexFd];
    seg.fd = seg.indexFd = -1;
    let error: unknown = null;
    for (const fd of fds) if (fd >= 0) await this.o.io.close(fd).catch(e => void (error ??= e));
    this.o.fds.release(seg.slots);
    seg.slots = 0;
    // finalize() reports a failed close (as before the cap); the fd is gone either way.
    if (strict && error) throw error;
  }

  // -------------------------------------------------------------- append

  append(records: AppendRecord[], now = Date.now()): AppendResult {
    if (this.closed) throw new LogBusError('CLOSED', `the log of '${this.name}' is closed`);
    if (this.failed) throw this.failed;
    const bound = validateAppend(this.name, records, now, this.config.maxMessageBytes);
    if (this.pendingBytes > MAX_PENDING_BYTES) {
      // Not a failure of the log: nothing is lost, the caller should wait for `durable` and retry.
      throw new LogBusError(
        'STORAGE',
        `the disk is not keeping up with '${this.name}': ${this.pendingBytes} bytes wait to be written; await earlier appends' durable before appending more`,
      );
    }

    // Encode into the slab (a fresh one if this batch does not fit).
    if (this.slab.length - this.slabPos < bound) {
      this.slab = Buffer.allocUnsafe(Math.max(this.nextSlab, bound));
      this.nextSlab = Math.min(SLAB_BYTES, this.nextSlab * 2);
      this.slabPos = 0;
    }
    const base = this.next;
    const pos0 = this.slabPos;
    const len = encodeBatch(this.slab, pos0, records, base, now);
    this.slabPos += len;

    let seg = this.active();
    if (seg.size > 0 && seg.size + len > this.config.segmentBytes) seg = this.roll();
    const segPos = seg.size;
    const index = seg.index!;
    if (index.length === 0 || segPos - index.lastPos() >= INDEX_INTERVAL) index.push(base - seg.base, segPos, seg.maxTs);
    seg.size += len;
    seg.next += records.length;
    if (now > seg.maxTs) seg.maxTs = now;
    this.total += len;
    this.next += records.length;
    this.pendingBytes += len;

    let cur = this.cur;
    if (!cur || cur.seg !== seg || cur.buf !== this.slab || cur.end !== pos0) {
      if (cur) this.pending.push(cur);
      cur = this.cur = {
        seg,
        buf: this.slab,
        start: pos0,
        end: pos0,
        segPos,
        firstOffset: base,
        endOffset: base,
        batchBase: [],
        batchPos: [],
      };
    }
    cur.batchBase.push(base);
    cur.batchPos.push(pos0);
    cur.end = pos0 + len;
    cur.endOffset = this.next;

    let g = this.group;
    if (!g) {
      let resolve!: () => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // A caller that ignores `durable` must not crash the process on failure;
      // the failure is still seen by anyone who awaits it.
      promise.catch(() => {});
      g = this.group = { promise, resolve, reject };
      this.lastGroup = promise;
    }
    if (!this.flushScheduled && !this.flushing) {
      this.flushScheduled = true;
      queueMicrotask(() => void this.flushLoop());
    }
    return { baseOffset: base, timestamp: now, durable: g.promise };
  }

  /** Seals the active segment (logically; the flush loop finalizes it on disk). */
  private roll(): Segment {
    const old = this.active();
    old.sealed = true;
    const seg = newSegment(this.dir, this.next);
    seg.index = new SegmentIndex();
    this.segments.push(seg);
    return seg;
  }

  private requestSync(): void {
    if (!this.dirty || this.failed || this.closed) return;
    this.syncRequested = true;
    if (!this.flushing && !this.flushScheduled) void this.flushLoop();
  }

  private async flushLoop(): Promise<void> {
    this.flushScheduled = false;
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (!this.failed && (this.cur || this.pending.length || this.syncRequested)) {
        const chunks = this.pending;
        if (this.cur) chunks.push(this.cur);
        this.pending = [];
        this.cur = null;
        for (const c of chunks) this.pendingBytes -= c.end - c.start;
        const g = this.group;
        this.group = null;
        try {
          await this.writeChunks(chunks, this.o.fsync === 'always' || this.syncRequested);
        } catch (e) {
          this.fail(e, g);
          break;
        }
        for (const c of chunks) this.addToCache(c);
        if (chunks.length) this.visibleNext = chunks[chunks.length - 1].endOffset;
        g?.resolve();
        // After the ack, between commits: appends meanwhile go into the next one.
        if (this.o.fsync === 'always') await this.preallocate();
      }
    } finally {
      this.flushing = false;
      this.o.fds.idle();
    }
  }

  private async writeChunks(chunks: Chunk[], sync: boolean): Promise<void> {
    const io = this.o.io;
    this.syncRequested = false;
    const touched = new Set<Segment>();
    for (const c of chunks) {
      const seg = c.seg;
      if (!seg.onDisk) {
        // Earlier segments must be synced before a later one exists on disk, or a
        // power loss leaves a hole inside a sealed segment (CORRUPT for good).
        await this.finalizeWritten(touched);
        await this.createFiles(seg);
        // The new segment's name must survive a crash before any ack depends on it.
        await io.fsyncDir(this.dir);
      } else {
        await this.openFiles(seg);
      }
      await writeFully(io, seg.fd, c.buf, c.start, c.end - c.start, c.segPos);
      seg.written = c.segPos + (c.end - c.start);
      if (seg.written > seg.allocated) seg.allocated = seg.written;
      this.dirty = true;
      // With fsync 'never' nothing is ordered anyway; otherwise entries wait for the sync below.
      if (this.o.fsync === 'never') await this.persistIndex(seg);
      touched.add(seg);
      if (seg.sealed && seg.written === seg.size) {
        await this.finalize(seg);
        touched.delete(seg);
      }
    }
    // A roll can come after the old segment's last chunk was already written:
    // no chunk of it will pass above again, so finalize it here (else it stays
    // open and retention, which only deletes finalized segments, never sees it).
    await this.finalizeWritten(touched);
    if (sync) {
      const synced = (this.o.fsync === 'always' ? [...touched] : [this.active()]).filter(s => s.onDisk);
      for (const seg of synced) {
        // Open already, unless the fd cap closed them while nothing was left to sync.
        await this.openFiles(seg);
        await io.fdatasync(seg.fd);
      }
      this.dirty = false;
      // Only now: an index entry on disk must never point at log bytes a power
      // loss can still take (recovery trusts entries and scans from the last one).
      for (const seg of synced) await this.persistIndex(seg);
    }
  }

  /**
   * Keeps zero-filled, synced space ahead of the active segment's logical end
   * (see PREALLOC_MAX). Only ever touches bytes past `written`, which hold no
   * data, and runs in the flush loop, so no write to the file is in flight.
   * The zeros are synced at once: a later commit must not have to persist the
   * size change. Recovery cuts them as a tail after the last whole batch.
   * A failure is not the log's: it is logged and the segment grows by its
   * appends alone (a full disk then fails the next append's own write).
   */
  private async preallocate(): Promise<void> {
    const io = this.o.io;
    const seg = this.active();
    // Not while closing: close would only cut it again.
    if (!io.allocate || seg.fd < 0 || seg.sealed || seg.noPrealloc || this.failed || this.closing) return;
    const ahead = Math.min(PREALLOC_MAX, Math.max(PREALLOC_MIN, seg.written));
    if (seg.allocated - seg.written >= ahead / 2) return;
    const from = Math.max(seg.allocated, seg.written);
    const to = Math.min(this.config.segmentBytes, seg.written + ahead);
    if (to <= from) return;
    try {
      await io.allocate(seg.fd, from, to - from);
      await io.fdatasync(seg.fd);
      seg.allocated = to;
    } catch (e) {
      seg.noPrealloc = true;
      // Part of it may be there: `allocated` past `written` makes finalize and close cut it.
      seg.allocated = to;
      this.o.logger.warn(
        `logbus store: ${seg.logPath}: preallocating ${to - from} bytes failed (${(e as Error).message}); the segment grows by its appends alone`,
      );
    }
  }

  /** Cuts preallocated zeros so the file ends at the segment's logical end (before the sync that makes it durable). */
  private async trimPreallocated(seg: Segment): Promise<void> {
    if (seg.allocated <= seg.written) return;
    await this.o.io.ftruncate(seg.fd, seg.written);
    seg.allocated = seg.written;
  }

  /** Finalizes sealed segments whose last chunk is written. */
  private async finalizeWritten(touched: Set<Segment>): Promise<void> {
    // Walk a snapshot: retention may shift this.segments while finalize() awaits.
    const segs = this.segments.slice(0, -1);
    for (let i = segs.length - 1; i >= 0 && !segs[i].finalized; i--) {
      const seg = segs[i];
      if (seg.sealed && seg.onDisk && seg.written === seg.size) {
        await this.finalize(seg);
        touched.delete(seg);
      }
    }
  }

  /**
   * Index entries of written batches go to the index file, INDEX_PERSIST_BATCH
   * at a time (no fsync: derived data). Entries not yet persisted at a crash
   * only lengthen the recovery scan by that many × INDEX_INTERVAL bytes.
   */
  private async persistIndex(seg: Segment, all = false): Promise<void> {
    const index = seg.index!;
    let n = seg.persisted;
    while (n < index.length && index.pos[n] < seg.written) n++;
    if (n === seg.persisted || (!all && n - seg.persisted < INDEX_PERSIST_BATCH)) return;
    const buf = index.encode(seg.persisted).subarray(0, (n - seg.persisted) * INDEX_ENTRY);
    await writeFully(this.o.io, seg.indexFd, buf, 0, buf.length, seg.persisted * INDEX_ENTRY);
    seg.persisted = n;
  }

  /** A sealed segment gets its end entry, is synced (unless fsync 'never') and closed. */
  private async finalize(seg: Segment): Promise<void> {
    const io = this.o.io;
    await this.openFiles(seg);
    // Log bytes and the file's final size first, then the end entry that vouches
    // for them (see writeChunks): open() trusts a sealed segment whose end entry matches its size.
    await this.trimPreallocated(seg);
    if (this.o.fsync !== 'never') await io.fdatasync(seg.fd);
    await this.writeEndEntry(seg);
    if (this.o.fsync !== 'never') await io.fdatasync(seg.indexFd);
    await this.closeFiles(seg, true);
    seg.finalized = true;
  }

  private async writeEndEntry(seg: Segment): Promise<void> {
    const index = seg.index!;
    await this.persistIndex(seg, true);
    if (index.lastPos() !== seg.written) index.push(seg.next - seg.base, seg.written, seg.maxTs);
    if (seg.persisted < index.length) {
      const buf = index.encode(seg.persisted);
      await writeFully(this.o.io, seg.indexFd, buf, 0, buf.length, seg.persisted * INDEX_ENTRY);
      seg.persisted = index.length;
    }
  }

  private fail(e: unknown, g: Group | null): void {
    const err = storageError(`writing the log of '${this.name}' in ${this.dir}`, e);
    this.failed = new LogBusError(
      'STORAGE',
      `${err.message.replace(/^STORAGE: /, '')}; the log of '${this.name}' refuses appends until it is reopened`,
      { cause: e },
    );
    this.o.logger.error(`logbus store: ${this.failed.message}`);
    g?.reject(this.failed);
    // Appends queued behind the failed write are never written: they would follow a gap.
    this.group?.reject(this.failed);
    this.group = null;
    this.pending = [];
    this.cur = null;
    this.pendingBytes = 0;
  }

  private addToCache(c: Chunk): void {
    if (this.o.cacheBytes <= 0) return;
    this.cache.push(c);
    this.cacheSize += c.end - c.start;
    this.o.cacheBudget.used += c.end - c.start;
    const budget = this.o.cacheBudget;
    while ((this.cacheSize > this.o.cacheBytes || budget.used > budget.limit) && this.cache.length > 1) this.evictOldest();
  }

  private evictOldest(): void {
    const old = this.cache.shift()!;
    this.cacheSize -= old.end - old.start;
    this.o.cacheBudget.used -= old.end - old.start;
  }

  flush(): Promise<void> {
    if (this.failed && !this.lastGroup) return Promise.reject(this.failed);
    return this.lastGroup ?? Promise.resolve();
  }

  // ---------------------------------------------------------------- read

  async read(from: number, maxRecords: number, maxBytes = Infinity): Promise<LogRecord[]> {
    if (this.closed) throw new LogBusError('CLOSED', `the log of '${this.name}' is closed`);
    if (!Number.isInteger(from) || from < 0) throw new LogBusError('INVALID_ARGUMENT', `read offset ${from} must be a non-negative integer`);
    const out: LogRecord[] = [];
    if (!(maxRecords > 0)) return out;
    for (let attempt = 0; ; attempt++) {
      const start = Math.max(from, this.earliestOffset);
      if (start >= this.visibleNext) return out;
      // Only what is written (and, with fsync 'always', synced) is visible.
      const limit = Math.min(maxRecords, MAX_READ_RECORDS, this.visibleNext - start);
      try {
        if (this.cache.length && start >= this.cache[0].firstOffset) {
          this.readCache(start, limit, maxBytes, out);
        } else {
          await this.readDisk(start, limit, maxBytes, out);
        }
        return out;
      } catch (e) {
        // Retention may delete a segment under a reader: clamp and retry once.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && attempt === 0) {
          out.length = 0;
          continue;
        }
        if (e instanceof LogBusError) {
          if (e.code === 'CORRUPT' && out.length > 0) return out;
          throw e;
        }
        throw storageError(`reading the log of '${this.name}'`, e);
      }
    }
  }

  private readCache(from: number, maxRecords: number, maxBytes: number, out: LogRecord[]): void {
    const cache = this.cache;
    let lo = 0;
    let hi = cache.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (cache[mid].firstOffset <= from) lo = mid;
      else hi = mid - 1;
    }
    const state = { bytes: 0 };
    for (let ci = lo; ci < cache.length; ci++) {
      const c = cache[ci];
      let b = 0;
      if (ci === lo) {
        let l = 0;
        let h = c.batchBase.length - 1;
        while (l < h) {
          const mid = (l + h + 1) >> 1;
          if (c.batchBase[mid] <= from) l = mid;
          else h = mid - 1;
        }
        b = l;
      }
      for (; b < c.batchBase.length; b++) {
        const p = c.batchPos[b];
        const info: BatchInfo = {
          length: c.buf.readUInt32LE(p + 4),
          count: c.buf.readUInt32LE(p + 12),
          base: c.batchBase[b],
          timestamp: c.buf.readDoubleLE(p + 24),
        };
        if (!decodeBatch(c.buf, p, info, from, out, maxRecords, maxBytes, state)) return;
      }
    }
  }

  private segmentIndexFor(offset: number): number {
    const segs = this.segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segs[mid].base <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private async indexOf(seg: Segment): Promise<SegmentIndex> {
    if (seg.index) return seg.index;
    if (!seg.indexLoading) {
      seg.indexLoading = (async () => {
        const io = this.o.io;
        const buf = (await io.size(seg.indexPath)) >= 0 ? await io.readFile(seg.indexPath) : Buffer.alloc(0);
        const { index } = SegmentIndex.parse(buf, seg.size);
        if (index.lastPos() === seg.size && index.rel[index.length - 1] === seg.next - seg.base) {
          seg.index = index;
          return index;
        }
        const rebuilt = await rebuildSealed(this.o, seg);
        this.total -= rebuilt.cut;
        return rebuilt.index;
      })().finally(() => {
        seg.indexLoading = null;
      });
    }
    return seg.indexLoading;
  }

  private corrupt(seg: Segment, pos: number, offset: number, why: string): LogBusError {
    const si = this.segments.indexOf(seg);
    const skip = si >= 0 && si < this.segments.length - 1 ? this.segments[si + 1].base : this.visibleNext;
    return new LogBusError(
      'CORRUPT',
      `${seg.logPath} is damaged at byte ${pos} (offset ${offset}: ${why}); it is not served. ` +
        `Read from offset ${skip} to skip the damaged segment, and restore or remove the file`,
    );
  }

  /** Reads from disk, segment by segment, via the sparse index; every batch's CRC is checked. */
  private async readDisk(from: number, maxRecords: number, maxBytes: number, out: LogRecord[]): Promise<void> {
    const io = this.o.io;
    const state = { bytes: 0 };
    let si = this.segmentIndexFor(from);
    let offset = from;
    while (si < this.segments.length && out.length < maxRecords && offset < this.visibleNext) {
      const seg = this.segments[si];
      const index = await this.indexOf(seg);
      const e = index.floorByRel(offset - seg.base);
      let pos = index.pos[e];
      let expect = seg.base + index.rel[e];
      const end = seg.written;
      // Read about what is asked for: the index gap plus maxRecords of this segment's average size.
      const avg = seg.next > seg.base ? seg.size / (seg.next - seg.base) : 1024;
      const wanted = Math.min(maxBytes === Infinity ? MAX_READ_WINDOW : maxBytes + 64 * 1024, (maxRecords - out.length) * avg * 1.1);
      const window = Math.min(MAX_READ_WINDOW, Math.max(16 * 1024, INDEX_INTERVAL + wanted));
      await this.o.fds.reserve(1);
      let full = false;
      let fd = -1;
      try {
        fd = await io.open(seg.logPath, 'r');
        let buf = Buffer.allocUnsafe(Math.min(window, Math.max(end - pos, BATCH_HEADER)));
        while (pos < end && !full) {
          const n = await readFully(io, fd, buf, 0, Math.min(buf.length, end - pos), pos);
          const decodedBefore = out.length;
          let p = 0;
          for (;;) {
            const c = checkBatch(buf, p, n, expect);
            if (c === 'bad') throw this.corrupt(seg, pos + p, expect, 'checksum, length or offset mismatch');
            if (c === 'short') {
              if (pos + n >= end) throw this.corrupt(seg, pos + p, expect, 'batch cut short by the end of the file');
              if (p === 0) {
                const len = buf.readUInt32LE(4);
                if (len > MAX_BATCH_BYTES + BATCH_HEADER) throw this.corrupt(seg, pos, expect, `impossible batch length ${len}`);
                buf = Buffer.allocUnsafe(len);
              }
              break;
            }
            if (c.base + c.count > offset) {
              let ok: boolean;
              try {
                ok = decodeBatch(buf, p, c, offset, out, maxRecords, maxBytes, state);
              } catch {
                throw this.corrupt(seg, pos + p, expect, 'record layout does not match its batch');
              }
              if (out.length) offset = out[out.length - 1].offset + 1;
              if (!ok || out.length >= maxRecords) {
                full = true;
                break;
              }
            }
            expect = c.base + c.count;
            p += c.length;
            if (p >= n) break;
          }
          pos += p;
          // Returned values are views into buf: the next window needs a buffer of its own.
          if (out.length > decodedBefore && !full) buf = Buffer.allocUnsafe(buf.length);
        }
      } finally {
        if (fd >= 0) await io.close(fd);
        this.o.fds.release(1);
      }
      if (full) return;
      if (seg.sealed && seg.finalized && expect !== seg.next) {
        throw this.corrupt(seg, pos, expect, `offsets ${expect} to ${seg.next - 1} are missing from the segment`);
      }
      offset = Math.max(offset, expect);
      si++;
    }
  }

  async offsetForTimestamp(ts: number): Promise<number> {
    if (this.closed) throw new LogBusError('CLOSED', `the log of '${this.name}' is closed`);
    if (typeof ts !== 'number' || Number.isNaN(ts)) throw new LogBusError('INVALID_ARGUMENT', `timestamp ${ts} is not a number`);
    try {
      return await this.findTimestamp(ts);
    } catch (e) {
      if (e instanceof LogBusError) throw e;
      // A segment deleted by retention meanwhile: its records are gone, so start again from what is left.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return this.findTimestamp(ts);
      throw storageError(`searching the log of '${this.name}' by time`, e);
    }
  }

  private async findTimestamp(ts: number): Promise<number> {
    const io = this.o.io;
    for (const seg of this.segments) {
      if (seg.written === 0 || seg.maxTs < ts) continue;
      const index = await this.indexOf(seg);
      const e = index.floorByTime(ts);
      let pos = index.pos[e];
      let expect = seg.base + index.rel[e];
      await this.o.fds.reserve(1);
      let fd = -1;
      try {
        fd = await io.open(seg.logPath, 'r');
        let buf = Buffer.allocUnsafe(Math.min(READ_WINDOW, Math.max(seg.written - pos, BATCH_HEADER)));
        while (pos < seg.written) {
          const n = await readFully(io, fd, buf, 0, Math.min(buf.length, seg.written - pos), pos);
          let p = 0;
          for (;;) {
            const c = checkBatch(buf, p, n, expect);
            if (c === 'bad') throw this.corrupt(seg, pos + p, expect, 'checksum, length or offset mismatch');
            if (c === 'short') {
              if (pos + n >= seg.written) throw this.corrupt(seg, pos + p, expect, 'batch cut short by the end of the file');
              if (p === 0) buf = Buffer.allocUnsafe(buf.readUInt32LE(4));
              break;
            }
            if (c.timestamp >= ts) return Math.max(c.base, this.earliestOffset);
            expect = c.base + c.count;
            p += c.length;
            if (p >= n) break;
          }
          pos += p;
        }
      } finally {
        if (fd >= 0) await io.close(fd);
        this.o.fds.release(1);
      }
    }
    return this.visibleNext;
  }

  // ------------------------------------------------------------ retention

  async enforceRetention(now = Date.now()): Promise<{ deletedSegments: number }> {
    if (this.closed) return { deletedSegments: 0 };
    const { maxAgeMs, maxBytes } = this.config.retention;
    const io = this.o.io;
    let deleted = 0;
    while (this.segments.length > 1) {
      const seg = this.segments[0];
      if (!seg.finalized) break;
      const tooOld = now - seg.maxTs > maxAgeMs;
      const tooBig = this.total > maxBytes;
      if (!tooOld && !tooBig) break;
      // Forget it first so readers clamp to the new earliest offset.
      this.segments.shift();
      this.total -= seg.size;
      while (this.cache.length && this.cache[0].endOffset <= this.earliestOffset) this.evictOldest();
      try {
        await io.unlink(seg.logPath);
        await io.unlink(seg.indexPath).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e;
        });
      } catch (e) {
        throw storageError(`deleting ${seg.logPath} for retention`, e);
      }
      deleted++;
    }
    if (deleted) {
      try {
        await io.fsyncDir(this.dir);
      } catch (e) {
        throw storageError(`syncing ${this.dir} after retention`, e);
      }
    }
    return { deletedSegments: deleted };
  }

  // ---------------------------------------------------------------- close

  /** Flushes, writes the active segment's end entry (so the next open scans nothing), syncs, closes. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush().catch(() => {});
    while (this.flushing || this.flushScheduled) await new Promise(r => setImmediate(r));
    this.closed = true;
    const seg = this.active();
    try {
      if (!this.failed && seg.onDisk) {
        await this.openFiles(seg);
        await this.trimPreallocated(seg);
        await this.o.io.fdatasync(seg.fd);
        await this.writeEndEntry(seg);
        await this.o.io.fdatasync(seg.indexFd);
      }
    } finally {
      await this.closeFds();
    }
  }

  private async closeFds(): Promise<void> {
    while (this.cache.length) this.evictOldest();
    for (const seg of this.segments) await this.closeFiles(seg);
  }
}
