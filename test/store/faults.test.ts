import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { LogBusError } from '../../lib/errors.js';
import type { AppendResult } from '../../lib/store/types.js';
import { FaultyIO } from './faulty-io.js';
import { openFile, recordingLogger, removeDir, tempDir, topicConfig, waitFor } from './helpers.js';

const cfg = topicConfig({ segmentBytes: 1 << 20 });
const value = (i: number) => Buffer.from(`record-${i}`.repeat(5));

describe('I/O faults', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => removeDir(dir));

  for (const partialBytes of [0, 37]) {
    it(`ENOSPC on a segment write${partialBytes ? ' (torn, partly written)' : ''}: STORAGE, no ack after the gap, recovery on reopen`, async () => {
      const io = new FaultyIO();
      io.failSegmentWriteAt = 4;
      io.partialBytes = partialBytes;
      const logger = recordingLogger();
      const store = await openFile(dir, { io, fsync: 'always', logger });
      const log = await store.openTopic('t', cfg);
      const acked: number[] = [];
      let failure: unknown;
      let next = 0;
      // One append per flush, so the 4th write fails.
      for (let round = 0; round < 6 && !failure; round++) {
        const results: AppendResult[] = [];
        for (let j = 0; j < 3; j++) results.push(log.append([{ key: undefined, headers: undefined, value: value(next++) }]));
        const settled = await Promise.allSettled(results.map(r => r.durable));
        settled.forEach((s, j) => {
          if (s.status === 'fulfilled') acked.push(results[j].baseOffset);
          else failure = s.reason;
        });
      }
      expect(failure).toBeInstanceOf(LogBusError);
      expect((failure as LogBusError).code).toBe('STORAGE');
      expect((failure as Error).message).toContain('ENOSPC');
      expect(logger.errors.length).toBeGreaterThan(0);
      expect(acked).toEqual(Array.from({ length: 9 }, (_, i) => i));
      // The log refuses further appends, synchronously.
      expect(() => log.append([{ key: undefined, headers: undefined, value: Buffer.from('late') }])).toThrow(
        expect.objectContaining({ code: 'STORAGE' }),
      );
      await expect(log.flush()).rejects.toMatchObject({ code: 'STORAGE' });
      // Reads never show anything past what was written.
      expect((await log.read(0, 100)).map(r => r.offset)).toEqual(acked);
      await store.close();

      const again = await openFile(dir, { fsync: 'always' });
      const log2 = await again.openTopic('t', cfg);
      expect(log2.nextOffset).toBe(9);
      const got = await log2.read(0, 100);
      expect(got.map(r => r.offset)).toEqual(acked);
      got.forEach(r => expect(r.value.equals(value(r.offset))).toBe(true));
      const r = log2.append([{ key: undefined, headers: undefined, value: Buffer.from('after') }]);
      await r.durable;
      expect(r.baseOffset).toBe(9);
      await again.close();
    });
  }

  it('EIO on fdatasync fails the group with STORAGE and nothing later is acknowledged', async () => {
    const io = new FaultyIO();
    const store = await openFile(dir, { io, fsync: 'always' });
    const log = await store.openTopic('t', cfg);
    await log.append([{ key: undefined, headers: undefined, value: value(0) }]).durable;
    io.failFdatasync = true;
    const a = log.append([{ key: undefined, headers: undefined, value: value(1) }]);
    await expect(a.durable).rejects.toMatchObject({ code: 'STORAGE' });
    expect(() => log.append([{ key: undefined, headers: undefined, value: value(2) }])).toThrow(expect.objectContaining({ code: 'STORAGE' }));
    io.failFdatasync = false;
    await store.close();
  });

  it('group commit: appends in flight share one write and one fdatasync', async () => {
    const io = new FaultyIO();
    const store = await openFile(dir, { io, fsync: 'always' });
    const log = await store.openTopic('t', cfg);
    const before = io.segmentWrites;
    const results = Array.from({ length: 64 }, (_, i) => log.append([{ key: undefined, headers: undefined, value: value(i) }]));
    await Promise.all(results.map(r => r.durable));
    expect(io.segmentWrites - before).toBe(1);
    expect(new Set(results.map(r => r.durable)).size).toBe(1);
    await store.close();
  });

  it("fsync 'interval': durable after the write, fdatasync from the timer; 'never' never syncs while running", async () => {
    const io = new FaultyIO();
    let store = await openFile(dir, { io, fsync: 'interval', fsyncIntervalMs: 60_000 });
    let log = await store.openTopic('t', cfg);
    await log.append([{ key: undefined, headers: undefined, value: value(0) }]).durable;
    expect(io.segmentSyncs).toBe(0);
    expect((await log.read(0, 10)).length).toBe(1);
    await store.close();

    const io2 = new FaultyIO();
    store = await openFile(dir, { io: io2, fsync: 'interval', fsyncIntervalMs: 10 });
    log = await store.openTopic('t', cfg);
    await log.append([{ key: undefined, headers: undefined, value: value(1) }]).durable;
    await waitFor(() => io2.segmentSyncs > 0, 'the interval fdatasync');
    await store.close();

    const io3 = new FaultyIO();
    store = await openFile(dir, { io: io3, fsync: 'never' });
    log = await store.openTopic('t', cfg);
    for (let i = 0; i < 20; i++) await log.append([{ key: undefined, headers: undefined, value: value(2 + i) }]).durable;
    expect(io3.segmentSyncs).toBe(0);
    expect(log.nextOffset).toBe(22);
    await store.close();
  });
});
