import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { cpSync, openSync, readFileSync, readdirSync, statSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { BATCH_HEADER, checkBatch, encodeBatch } from '../../lib/store/batch-format.js';
import { type StoreIO, nodeIO } from '../../lib/store/io.js';
import type { AppendRecord, TopicLog } from '../../lib/store/types.js';
import { openFile, recordingLogger, removeDir, tempDir, topicConfig, waitFor } from './helpers.js';

/**
 * With fsync 'always' the active segment keeps zero-filled, synced space
 * ahead of its logical end (so a commit's fdatasync does not also commit a
 * new file size). These tests pin what that must not change: sizes, reads,
 * recovery and sealed segments all go by the logical end.
 */

const errno = (code: string) => Object.assign(new Error(`${code}: injected fault`), { code });

/** nodeIO that counts preallocations, bytes read and operations in flight; can fail preallocation. */
class TrackingIO implements StoreIO {
  inflight = 0;
  allocations = 0;
  bytesRead = 0;
  /** 'partial': half the zeros reach the file, then ENOSPC. */
  failAllocate: 'no' | 'yes' | 'partial' = 'no';

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight++;
    return p.finally(() => this.inflight--);
  }
  open = (path: string, flags: string) => this.track(nodeIO.open(path, flags));
  close = (fd: number) => this.track(nodeIO.close(fd));
  write = (fd: number, buf: Buffer, offset: number, length: number, position: number) => this.track(nodeIO.write(fd, buf, offset, length, position));
  read = (fd: number, buf: Buffer, offset: number, length: number, position: number) =>
    this.track(
      nodeIO.read(fd, buf, offset, length, position).then(n => {
        this.bytesRead += n;
        return n;
      }),
    );
  fdatasync = (fd: number) => this.track(nodeIO.fdatasync(fd));
  ftruncate = (fd: number, length: number) => this.track(nodeIO.ftruncate(fd, length));
  allocate = (fd: number, position: number, length: number) =>
    this.track(
      (async () => {
        this.allocations++;
        if (this.failAllocate === 'partial') await nodeIO.allocate!(fd, position, length >> 1);
        if (this.failAllocate !== 'no') throw errno('ENOSPC');
        await nodeIO.allocate!(fd, position, length);
      })(),
    );
  fsize = (fd: number) => this.track(nodeIO.fsize(fd));
  size = (path: string) => this.track(nodeIO.size(path));
  readFile = (path: string) =>
    this.track(
      nodeIO.readFile(path).then(b => {
        this.bytesRead += b.length;
        return b;
      }),
    );
  readdir = (path: string) => this.track(nodeIO.readdir(path));
  mkdir = (path: string) => this.track(nodeIO.mkdir(path));
  rename = (from: string, to: string) => this.track(nodeIO.rename(from, to));
  unlink = (path: string) => this.track(nodeIO.unlink(path));
  rmdir = (path: string) => this.track(nodeIO.rmdir(path));
  fsyncDir = (path: string) => this.track(nodeIO.fsyncDir(path));
}

const record = (i: number, size = 100): AppendRecord => ({ key: `k${i % 7}`, headers: undefined, value: Buffer.alloc(size, i % 251) });

/** Appends `batches` batches of `perBatch` records, `window` in flight at a time; returns the records' count. */
async function fill(log: TopicLog, batches: number, perBatch: number, window = 32): Promise<number> {
  let n = log.nextOffset;
  for (let b = 0; b < batches; b += window) {
    const results = [];
    for (let k = b; k < Math.min(batches, b + window); k++) {
      results.push(log.append(Array.from({ length: perBatch }, () => record(n++))).durable);
    }
    await Promise.all(results);
  }
  return n;
}

async function expectExact(log: TopicLog, count: number): Promise<void> {
  let from = 0;
  while (from < count) {
    const got = await log.read(from, 20_000);
    expect(got.length).toBeGreaterThan(0);
    for (const r of got) {
      if (r.offset !== from || !r.value.equals(record(from).value) || r.key !== record(from).key) throw new Error(`record ${from} differs`);
      from++;
    }
  }
  expect(log.nextOffset).toBe(count);
}

function segmentFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'topics', 't');
  return readdirSync(dir)
    .filter(f => f.endsWith('.log'))
    .sort()
    .map(f => join(dir, f));
}

const allZero = (b: Buffer) => b.every(x => x === 0);

/** Until no I/O has been in flight over two polls (the flush loop preallocates after acknowledging). */
async function settle(io: TrackingIO): Promise<void> {
  let calm = 0;
  await waitFor(() => (calm = io.inflight === 0 ? calm + 1 : 0) >= 2, 'the flush loop to settle');
}

/** A copy of the data directory as a kill -9 would leave it (all I/O settled), without the lock. */
async function crashCopy(io: TrackingIO, from: string, to: string): Promise<void> {
  await settle(io);
  cpSync(from, to, { recursive: true, filter: src => !src.endsWith('LOCK') });
}

describe("segment preallocation (fsync 'always')", () => {
  let dir: string;
  let copy: string;
  beforeEach(() => {
    dir = tempDir();
    copy = tempDir();
  });
  afterEach(() => {
    removeDir(dir);
    removeDir(copy);
  });

  it('keeps zeros ahead of the active segment; sizes and reads use the logical end; sealed and closed files end at it', async () => {
    const io = new TrackingIO();
    const logger = recordingLogger();
    const cfg = topicConfig({ segmentBytes: 128 * 1024 });
    let store = await openFile(dir, { io, fsync: 'always', logger });
    let log = await store.openTopic('t', cfg);
    const count = await fill(log, 40, 100); // ~440 KB: several rolls
    await settle(io);
    expect(io.allocations).toBeGreaterThan(0);

    const files = segmentFiles(dir);
    expect(files.length).toBeGreaterThan(2);
    const sealedBytes = files.slice(0, -1).reduce((s, f) => s + statSync(f).size, 0);
    const active = readFileSync(files[files.length - 1]);
    const activeLogical = log.sizeBytes - sealedBytes;
    // Sealed segments were cut to their last batch; the active one has zeros past it, within segmentBytes.
    for (const f of files.slice(0, -1)) expect(statSync(f).size).toBeLessThanOrEqual(cfg.segmentBytes);
    expect(activeLogical).toBeGreaterThan(0);
    expect(active.length).toBeGreaterThan(activeLogical);
    expect(active.length).toBeLessThanOrEqual(cfg.segmentBytes);
    expect(allZero(active.subarray(activeLogical))).toBe(true);
    expect(allZero(active.subarray(activeLogical - 8, activeLogical))).toBe(false);
    await expectExact(log, count);
    const size = log.sizeBytes;
    await store.close();

    // A clean close cuts the zeros: every file ends at its last batch.
    const closed = segmentFiles(dir).reduce((s, f) => s + statSync(f).size, 0);
    expect(closed).toBe(size);

    // Reopening trusts every segment's end entry: no scan, no warning.
    const io2 = new TrackingIO();
    store = await openFile(dir, { io: io2, fsync: 'always', logger });
    log = await store.openTopic('t', cfg);
    expect(io2.bytesRead).toBeLessThan(8 * 1024);
    expect(log.sizeBytes).toBe(size);
    expect(logger.warnings).toEqual([]);
    await expectExact(log, count);
    // And appends go on after the last batch, not after the (cut) zeros.
    await fill(log, 3, 10);
    await expectExact(log, count + 30);
    await store.close();
    expect(logger.warnings).toEqual([]);
  });

  it('after a crash, the zeros after the last batch are cut without a warning and the scan stays bounded', async () => {
    const io = new TrackingIO();
    const cfg = topicConfig({ segmentBytes: 64 << 20, maxMessageBytes: 1 << 20 });
    const store = await openFile(dir, { io, fsync: 'always' });
    const log = await store.openTopic('t', cfg);
    const count = await fill(log, 1600, 100); // ~17 MB in one segment
    const logical = log.sizeBytes;
    await crashCopy(io, dir, copy);
    await store.close();
    const [seg] = segmentFiles(copy);
    expect(statSync(seg).size).toBeGreaterThan(logical);

    const io2 = new TrackingIO();
    const logger = recordingLogger();
    const again = await openFile(copy, { io: io2, fsync: 'always', logger });
    const log2 = await again.openTopic('t', cfg);
    // Recovery scans from the last persisted index entry (plus the zeros check), not the segment.
    expect(io2.bytesRead).toBeLessThan(logical / 2);
    expect(log2.nextOffset).toBe(count);
    expect(log2.sizeBytes).toBe(logical);
    expect(statSync(seg).size).toBe(logical);
    expect(logger.warnings).toEqual([]);
    await expectExact(log2, count);
    await fill(log2, 2, 5);
    await expectExact(log2, count + 10);
    await again.close();
  });

  it('a torn batch followed by zeros is cut with a warning; every whole batch stays', async () => {
    const io = new TrackingIO();
    const cfg = topicConfig({ segmentBytes: 1 << 20 });
    const store = await openFile(dir, { io, fsync: 'always' });
    const log = await store.openTopic('t', cfg);
    const count = await fill(log, 30, 20);
    const logical = log.sizeBytes;
    await crashCopy(io, dir, copy);
    await store.close();
    const [seg] = segmentFiles(copy);
    expect(statSync(seg).size).toBeGreaterThan(logical + 2000);

    // The next batch, half written into the preallocated space.
    const buf = Buffer.alloc(4096);
    const len = encodeBatch(buf, 0, Array.from({ length: 10 }, (_, i) => record(count + i)), count, Date.now());
    const fd = openSync(seg, 'r+');
    writeSync(fd, buf, 0, len >> 1, logical);
    closeSync(fd);

    const logger = recordingLogger();
    const again = await openFile(copy, { fsync: 'always', logger });
    const log2 = await again.openTopic('t', cfg);
    expect(log2.nextOffset).toBe(count);
    expect(log2.sizeBytes).toBe(logical);
    expect(statSync(seg).size).toBe(logical);
    expect(logger.warnings.some(w => w.includes('torn tail'))).toBe(true);
    await expectExact(log2, count);
    await again.close();
  });

  it('zeros never parse as a batch', () => {
    const zeros = Buffer.alloc(BATCH_HEADER + 200);
    expect(checkBatch(zeros, 0, zeros.length)).toBe('bad');
    expect(checkBatch(zeros, 0, zeros.length, 0)).toBe('bad');
    expect(checkBatch(zeros, 0, BATCH_HEADER - 1)).toBe('short');
  });

  for (const how of ['yes', 'partial'] as const) {
    it(`preallocation failing (${how === 'partial' ? 'part written, then ' : ''}ENOSPC) does not fail the log; close still cuts to the last batch`, async () => {
      const io = new TrackingIO();
      io.failAllocate = how;
      const logger = recordingLogger();
      const cfg = topicConfig({ segmentBytes: 1 << 20 });
      const store = await openFile(dir, { io, fsync: 'always', logger });
      const log = await store.openTopic('t', cfg);
      const count = await fill(log, 20, 20);
      await settle(io);
      // Tried once for the segment, reported, not retried on every commit.
      expect(io.allocations).toBe(1);
      expect(logger.warnings.filter(w => w.includes('preallocating'))).toHaveLength(1);
      expect(logger.errors).toEqual([]);
      await expectExact(log, count);
      const size = log.sizeBytes;
      await store.close();
      expect(statSync(segmentFiles(dir)[0]).size).toBe(size);

      const logger2 = recordingLogger();
      const again = await openFile(dir, { fsync: 'always', logger: logger2 });
      const log2 = await again.openTopic('t', cfg);
      await expectExact(log2, count);
      expect(logger2.warnings).toEqual([]);
      await again.close();
    });
  }

  for (const fsync of ['interval', 'never'] as const) {
    it(`fsync '${fsync}' does not preallocate`, async () => {
      const io = new TrackingIO();
      const store = await openFile(dir, { io, fsync, fsyncIntervalMs: 5 });
      const log = await store.openTopic('t', topicConfig({ segmentBytes: 1 << 20 }));
      await fill(log, 10, 20);
      await settle(io);
      expect(io.allocations).toBe(0);
      expect(statSync(segmentFiles(dir)[0]).size).toBe(log.sizeBytes);
      await store.close();
    });
  }
});
