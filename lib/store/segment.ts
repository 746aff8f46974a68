import { join } from 'node:path';
import type { FsyncMode } from '../options.js';
import { BATCH_HEADER, MAX_BATCH_BYTES, checkBatch } from './batch-format.js';
import type { FdPool } from './fd-pool.js';
import { type StoreIO, readFully, writeFully } from './io.js';
import { INDEX_ENTRY, INDEX_INTERVAL, SegmentIndex, decodeEntry } from './segment-index.js';
import type { StoreLogger } from './types.js';

/**
 * One segment's state, and how a segment is opened, scanned, recovered and
 * its index rebuilt. Appending, reading and retention live in file-topic-log.ts.
 */

const SCAN_WINDOW = 1024 * 1024;

export type SegmentIO = Pick<LogIOOptions, 'io' | 'fsync' | 'logger' | 'fds'>;

export interface LogIOOptions {
  io: StoreIO;
  fsync: FsyncMode;
  fsyncIntervalMs: number;
  logger: StoreLogger;
  /** Per topic: bytes of recently written batches kept in memory for tailing readers. */
  cacheBytes: number;
  /** Shared by all topics of a store: the cache total stays near `limit` (plus one chunk per topic). */
  cacheBudget: { used: number; limit: number };
  /** Shared by all topics of a store: every segment file open is reserved here first (fd-pool.ts). */
  fds: FdPool;
}

export interface Segment {
  base: number;
  logPath: string;
  indexPath: string;
  /** Logical size: includes batches appended but not yet written. */
  size: number;
  /** Bytes written to the OS: the logical end on disk. Reads, index entries and recovery stop here. */
  written: number;
  /**
   * Length of the file: >= written while zeros are preallocated after the
   * logical end (fsync 'always'); cut back to `written` when the segment is
   * sealed and on clean close, so a closed segment's file size is its end.
   */
  allocated: number;
  /** Preallocation failed for this segment (e.g. ENOSPC): it grows by its appends alone. */
  noPrealloc: boolean;
  /** Offset after the segment's last record (logical). */
  next: number;
  /** Newest record timestamp (logical); -Infinity when empty. */
  maxTs: number;
  /** Loaded lazily for sealed segments. */
  index: SegmentIndex | null;
  indexLoading: Promise<SegmentIndex> | null;
  /** Entries already written to the index file (active segment). */
  persisted: number;
  /** -1 when not open: never created, finalized, or closed by the fd cap (onDisk tells which). */
  fd: number;
  indexFd: number;
  /** Both files exist: a later open must not create or truncate them. */
  onDisk: boolean;
  /** fds reserved in the pool for fd and indexFd (0 or 2). */
  slots: number;
  /** The pool is closing fd and indexFd (the cap): wait for it before opening them again. */
  evicting: Promise<void> | null;
  /** Files being reopened, so two users do not open them twice. */
  opening: Promise<void> | null;
  sealed: boolean;
  /** Sealed, fully written, end entry written, fds closed: safe to delete. */
  finalized: boolean;
}

export const segName = (base: number): string => String(base).padStart(20, '0');

export function newSegment(dir: string, base: number): Segment {
  return {
    base,
    logPath: join(dir, `${segName(base)}.log`),
    indexPath: join(dir, `${segName(base)}.index`),
    size: 0,
    written: 0,
    allocated: 0,
    noPrealloc: false,
    next: base,
    maxTs: -Infinity,
    index: null,
    indexLoading: null,
    persisted: 0,
    fd: -1,
    indexFd: -1,
    onDisk: false,
    slots: 0,
    evicting: null,
    opening: null,
    sealed: false,
    finalized: false,
  };
}

/** A sealed segment is trusted from its index's end entry alone; otherwise it is rescanned. */
export async function openSealed(o: SegmentIO, seg: Segment): Promise<void> {
  const io = o.io;
  seg.size = seg.written = seg.allocated = await io.size(seg.logPath);
  const idxSize = await io.size(seg.indexPath);
  if (idxSize >= INDEX_ENTRY) {
    const trusted = await o.fds.using(1, async () => {
      const fd = await io.open(seg.indexPath, 'r');
      try {
        const at = Math.floor(idxSize / INDEX_ENTRY) * INDEX_ENTRY - INDEX_ENTRY;
        const buf = Buffer.alloc(INDEX_ENTRY);
        await readFully(io, fd, buf, 0, INDEX_ENTRY, at);
        const e = decodeEntry(buf, 0);
        if (e && e.pos === seg.size && e.rel === seg.next - seg.base) {
          seg.maxTs = e.maxTs;
          return true;
        }
        return false;
      } finally {
        await io.close(fd);
      }
    });
    if (trusted) return;
  }
  await rebuildSealed(o, seg);
}

/** Scans a whole sealed segment to rebuild its index; reports damage, cuts only provable garbage. */
export function rebuildSealed(o: SegmentIO, seg: Segment): Promise<{ index: SegmentIndex; cut: number }> {
  // The log file and, at the end, its index file are open together.
  return o.fds.using(2, () => rebuild(o, seg));
}

async function rebuild(o: SegmentIO, seg: Segment): Promise<{ index: SegmentIndex; cut: number }> {
  const io = o.io;
  const index = new SegmentIndex();
  let cut = 0;
  const fd = await io.open(seg.logPath, 'r+');
  try {
    const r = await scanSegment(o.io, fd, seg, 0, seg.base, -Infinity, seg.size, index);
    seg.maxTs = r.maxTs;
    if (r.next === seg.next) {
      if (r.pos < seg.size) {
        // Every offset up to the next segment is here: what follows is garbage, not data.
        o.logger.warn(
          `logbus store: ${seg.logPath}: cut ${seg.size - r.pos} bytes of garbage after the last batch (offsets complete up to ${seg.next})`,
        );
        await io.ftruncate(fd, r.pos);
        if (o.fsync !== 'never') await io.fdatasync(fd);
        cut = seg.size - r.pos;
        seg.size = seg.written = seg.allocated = r.pos;
      }
      index.push(seg.next - seg.base, seg.size, seg.maxTs);
      await writeWholeIndex(o, seg, index, false);
    } else {
      o.logger.error(
        `logbus store: ${seg.logPath} is damaged at byte ${r.pos}: offsets ${r.next} to ${seg.next - 1} cannot be read ` +
          `(checksum or length mismatch). Reads reaching them fail with CORRUPT; read from ${seg.next} to skip them. ` +
          `The file is left untouched for inspection.`,
      );
    }
  } finally {
    await io.close(fd);
  }
  seg.index = index;
  return { index, cut };
}

/**
 * After a crash only the active segment can have a torn tail. Its index
 * (written as it grew) says where the last indexed batch starts, so
 * recovery scans from there: open costs the unindexed tail, not the log.
 * The caller has reserved seg's two fds in the pool; they stay open.
 */
export async function recoverActive(o: SegmentIO, seg: Segment): Promise<void> {
  const io = o.io;
  seg.fd = await io.open(seg.logPath, 'r+');
  const size = await io.fsize(seg.fd);
  const idxBuf = (await io.size(seg.indexPath)) >= 0 ? await io.readFile(seg.indexPath) : Buffer.alloc(0);
  const parsed = SegmentIndex.parse(idxBuf, size);
  const index = parsed.index;
  const parsedLength = index.length;
  if (index.length === 0) index.push(0, 0, -Infinity);
  let r: { pos: number; next: number; maxTs: number; batches: number };
  for (;;) {
    // Scan from the last entry; the scan does not re-add an entry at its own start.
    const k = index.length - 1;
    r = await scanSegment(o.io, seg.fd, seg, index.pos[k], seg.base + index.rel[k], index.maxTs[k], size, index);
    // Nothing valid right after an entry that points inside the file: the entry
    // may be stale (power loss) or the tail torn there. Drop it and rescan from the one before.
    if (r.batches === 0 && index.pos[k] < size && k > 0) {
      index.truncate(k);
      continue;
    }
    break;
  }
  if (r.pos < size) {
    // Zeros only: space preallocated ahead of the appends (file-topic-log.ts), no data lost.
    if (!(await isZeros(io, seg.fd, r.pos, size))) {
      o.logger.warn(
        `logbus store: ${seg.logPath}: cut a torn tail of ${size - r.pos} bytes at byte ${r.pos} (last whole batch ends at offset ${r.next})`,
      );
    }
    await io.ftruncate(seg.fd, r.pos);
    if (o.fsync !== 'never') await io.fdatasync(seg.fd);
  }
  seg.size = seg.written = seg.allocated = r.pos;
  seg.next = r.next;
  seg.maxTs = r.maxTs;
  const changed = !parsed.clean || index.length !== parsedLength || r.pos < size;
  if (changed || (await io.size(seg.indexPath)) < 0) {
    await writeWholeIndex(o, seg, index, true);
  } else {
    seg.indexFd = await io.open(seg.indexPath, 'r+');
  }
  seg.index = index;
  seg.persisted = index.length;
}

/** Preallocated space is at most a few MiB; a longer tail is not taken for it. */
const MAX_ZERO_CHECK = 16 * 1024 * 1024;

/** Whether bytes [from, to) of the file are all zero (a bounded read). */
async function isZeros(io: StoreIO, fd: number, from: number, to: number): Promise<boolean> {
  if (to - from > MAX_ZERO_CHECK) return false;
  const buf = Buffer.allocUnsafe(Math.min(SCAN_WINDOW, to - from));
  for (let pos = from; pos < to; ) {
    const n = await readFully(io, fd, buf, 0, Math.min(buf.length, to - pos), pos);
    if (n === 0) return false;
    for (let i = 0; i < n; i++) if (buf[i] !== 0) return false;
    pos += n;
  }
  return true;
}

/**
 * Walks batches from pos (expected first offset `offset`) until `end` or the
 * first bad/torn batch, adding index entries per INDEX_INTERVAL.
 */
export async function scanSegment(
  io: StoreIO,
  fd: number,
  seg: Segment,
  pos: number,
  offset: number,
  maxTs: number,
  end: number,
  index: SegmentIndex,
): Promise<{ pos: number; next: number; maxTs: number; batches: number }> {
  let batches = 0;
  let buf = Buffer.allocUnsafe(Math.min(SCAN_WINDOW, Math.max(end - pos, BATCH_HEADER)));
  // pos always points at the next unchecked batch, so any exit leaves it at the last whole batch's end.
  while (pos < end) {
    const windowStart = pos;
    const n = await readFully(io, fd, buf, 0, Math.min(buf.length, end - pos), pos);
    let p = 0;
    let grow = 0;
    for (;;) {
      const c = checkBatch(buf, p, n, offset);
      if (c === 'bad') return { pos, next: offset, maxTs, batches };
      if (c === 'short') {
        if (windowStart + n >= end) return { pos, next: offset, maxTs, batches }; // torn at end of file
        if (p === 0) {
          // One batch larger than the window: grow to fit it (bounded by MAX_BATCH_BYTES).
          const len = n >= 8 ? buf.readUInt32LE(4) : 0;
          if (len <= buf.length || len > MAX_BATCH_BYTES + BATCH_HEADER) return { pos, next: offset, maxTs, batches };
          grow = len;
        }
        break;
      }
      if (index.length === 0 || pos - index.lastPos() >= INDEX_INTERVAL) index.push(offset - seg.base, pos, maxTs);
      offset += c.count;
      if (c.timestamp > maxTs) maxTs = c.timestamp;
      batches++;
      p += c.length;
      pos += c.length;
      if (p >= n) break;
    }
    if (grow) buf = Buffer.allocUnsafe(grow);
  }
  return { pos, next: offset, maxTs, batches };
}

export async function writeWholeIndex(o: SegmentIO, seg: Segment, index: SegmentIndex, keepOpen: boolean): Promise<void> {
  const io = o.io;
  const fd = await io.open(seg.indexPath, 'w+');
  const buf = index.encode();
  await writeFully(io, fd, buf, 0, buf.length, 0);
  if (o.fsync !== 'never') await io.fdatasync(fd);
  if (keepOpen) seg.indexFd = fd;
  else await io.close(fd);
}
