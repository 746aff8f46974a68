import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { FileStore } from '../../lib/store/file-store.js';
import { hashOf, recordFor } from './fixtures/payload.js';
import { fixture, recordingLogger, removeDir, spawnFixture, tempDir, waitFor } from './helpers.js';

const cfg = {
  segmentBytes: 16384,
  maxMessageBytes: 1 << 20,
  retention: { maxAgeMs: Number.MAX_SAFE_INTEGER, maxBytes: Number.MAX_SAFE_INTEGER },
};

/** Reopens in this process and checks every record 0..next-1 byte for byte; returns nextOffset. */
async function verify(dir: string, acked: number, ackedHash: string | undefined): Promise<number> {
  const store = await FileStore.open({ dataDir: dir, fsync: 'never', logger: recordingLogger() });
  try {
    const log = await store.openTopic('crash', cfg);
    expect(log.nextOffset).toBeGreaterThan(acked);
    let from = 0;
    while (from < log.nextOffset) {
      const batch = await log.read(from, 5000);
      expect(batch.length).toBeGreaterThan(0);
      for (const r of batch) {
        // Contiguous offsets, exact bytes, keys and headers.
        expect(r.offset).toBe(from);
        const want = recordFor(r.offset);
        if (!r.value.equals(want.value) || r.key !== want.key) throw new Error(`record ${r.offset} differs from what was appended`);
        expect(r.headers).toEqual(want.headers ?? {});
        if (r.offset === acked && ackedHash) expect(hashOf(r.value)).toBe(ackedHash);
        from++;
      }
    }
    return log.nextOffset;
  } finally {
    await store.close();
  }
}

describe('kill -9 while appending', () => {
  let dir: string;
  beforeAll(() => {
    fixture('append-loop'); // fails clearly if the fixtures were not compiled
    dir = tempDir();
  });
  afterAll(() => removeDir(dir));

  // 12 rounds in all keeps this file near 15 s on 2 busy cores; each round is a fresh process.
  for (const [fsync, rounds] of [['never', 7], ['always', 5]] as const) {
    it(`keeps every acknowledged record over ${rounds} kill -9 rounds (fsync '${fsync}')`, async () => {
      const d = `${dir}/${fsync}`;
      let next = 0;
      for (let round = 0; round < rounds; round++) {
        const { child, lines, exited } = spawnFixture('append-loop', [d, fsync]);
        try {
          // Generous: on a busy shared disk, the child's start-up fsyncs can take seconds.
          await waitFor(() => lines.some(l => l.startsWith('ready') || l.startsWith('exit')), 'the appender to start', 30_000);
          expect(lines.filter(l => l.startsWith('exit'))).toEqual([]);
          expect(lines.find(l => l.startsWith('ready'))!.split(' ')[2]).toBe(String(next));
          // Let it run for a random while, then kill it mid-flight.
          const until = lines.length + 5 + Math.floor(Math.random() * 200);
          await waitFor(() => lines.length >= until || lines.some(l => l.startsWith('exit')), 'acknowledgements', 30_000);
          child.kill('SIGKILL');
          await exited;
        } finally {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }
        expect(lines.filter(l => l.startsWith('exit'))).toEqual([]);
        const acks = lines.filter(l => l.startsWith('ack ')).map(l => l.split(' '));
        expect(acks.length).toBeGreaterThan(0);
        let acked = -1;
        let hash: string | undefined;
        for (const [, off, h] of acks) {
          if (Number(off) > acked) {
            acked = Number(off);
            hash = h;
          }
        }
        const reopened = await verify(d, acked, hash);
        expect(reopened).toBeGreaterThanOrEqual(next);
        next = reopened;
      }
    }, 180_000);
  }
});

describe('dataDir lock across processes', () => {
  it('fails at once with LOCKED naming the owner pid, and takes over after the owner is killed -9', async () => {
    const dir = tempDir();
    const { child, lines, exited } = spawnFixture('append-loop', [dir, 'never']);
    try {
      await waitFor(() => lines.some(l => l.startsWith('ready') || l.startsWith('exit')), 'the appender to start', 30_000);
      expect(lines.filter(l => l.startsWith('exit'))).toEqual([]);
      const pid = child.pid!;
      await expect(FileStore.open({ dataDir: dir, fsync: 'never', logger: recordingLogger() })).rejects.toMatchObject({
        code: 'LOCKED',
        message: expect.stringContaining(`process ${pid}`),
      });
      child.kill('SIGKILL');
      await exited;
      const store = await FileStore.open({ dataDir: dir, fsync: 'never', logger: recordingLogger() });
      const log = await store.openTopic('crash', cfg);
      expect(log.nextOffset).toBeGreaterThanOrEqual(0);
      await store.close();
      // Released on close: opening again works.
      await (await FileStore.open({ dataDir: dir, fsync: 'never', logger: recordingLogger() })).close();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      removeDir(dir);
    }
  });
});
