import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FsyncMode } from '../../lib/options.js';
import type { TopicLog } from '../../lib/store/types.js';
import { powerLossRound } from '../reliability/power-loss.js';
import { openFile, removeDir, tempDir, topicConfig } from './helpers.js';
import { PathTrackingIO } from './path-tracking-io.js';

/**
 * The store keeps at most `maxOpenFiles` segment and index files open, all
 * topics together: idle segments' files are closed least recently used first
 * and reopened when needed, with nothing on disk changed by it.
 */

const CAP = 16;
/** Checkpoint saves open a file of their own, outside the segment-file cap. */
const OUTSIDE_CAP = 1;
const RECORD = 900;

const value = (topic: string, i: number): Buffer => Buffer.alloc(RECORD, `${topic}#${i};`);
const append = (log: TopicLog, topic: string, i: number) => log.append([{ key: `k${i}`, headers: undefined, value: value(topic, i) }]);

/** Appends records [from, to) of `topic`, one per append, without waiting in between. */
function appendRange(log: TopicLog, topic: string, from: number, to: number): Promise<void>[] {
  const out: Promise<void>[] = [];
  for (let i = from; i < to; i++) out.push(append(log, topic, i).durable);
  return out;
}

async function expectRecords(log: TopicLog, topic: string, offsets: number[]): Promise<void> {
  for (const o of offsets) {
    const [r] = await log.read(o, 1);
    expect(r?.offset).toBe(o);
    expect(r.value.equals(value(topic, o))).toBe(true);
  }
}

/** Every file of a topic's directory and its bytes. */
function snapshot(dir: string, topic: string): Record<string, Buffer> {
  const d = join(dir, 'topics', topic);
  return Object.fromEntries(readdirSync(d).map(f => [f, readFileSync(join(d, f))]));
}

const openIn = (io: PathTrackingIO, topic: string): string[] => [...io.paths.values()].filter(p => p.includes(`/topics/${topic}/`));

/**
 * Appends to `others` (one record each per round) until the cap has closed
 * `victim`'s files: once its flush loop, preallocation included, is done.
 */
async function writeUntilClosed(io: PathTrackingIO, victim: string, others: Record<string, TopicLog>): Promise<void> {
  for (let round = 0; openIn(io, victim).length > 0; round++) {
    if (round === 20) throw new Error(`the files of '${victim}' were never closed`);
    await Promise.all(Object.entries(others).map(([n, log]) => append(log, n, log.nextOffset).durable));
  }
}

describe('the store-wide cap on open segment files', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => removeDir(dir));

  const cases: Array<[FsyncMode, number]> = [
    ['never', 200],
    ['interval', 40],
    ['always', 40],
  ];
  it.each(cases)('fsync %s: %d topics keep every record while at most the cap of files is ever open', async (fsync, topics) => {
    const io = new PathTrackingIO();
    const names = Array.from({ length: topics }, (_, t) => `t${t}`);
    // 4 records of ~1 KiB per 4 KiB segment: 6 records make two segments.
    const cfg = topicConfig();
    let store = await openFile(dir, { io, fsync, fsyncIntervalMs: 5, maxOpenFiles: CAP });
    let logs = await Promise.all(names.map(n => store.openTopic(n, cfg)));
    // All topics append at once: their flushes must queue for fds, not exceed the cap.
    await Promise.all(logs.flatMap((log, t) => appendRange(log, names[t], 0, 6)));
    await Promise.all(logs.map(l => l.flush()));
    for (const [t, log] of logs.entries()) await expectRecords(log, names[t], [0, 5]);
    await Promise.all(logs.flatMap((log, t) => appendRange(log, names[t], 6, 10)));
    await Promise.all(logs.map(l => l.flush()));
    await store.close();
    expect(io.paths.size).toBe(0);

    store = await openFile(dir, { io, fsync, maxOpenFiles: CAP });
    logs = await Promise.all(names.map(n => store.openTopic(n, cfg)));
    for (const [t, log] of logs.entries()) {
      expect(log.nextOffset).toBe(10);
      const all = await log.read(0, 100);
      expect(all.map(r => r.offset)).toEqual([...Array(10).keys()]);
      for (const r of all) expect(r.value.equals(value(names[t], r.offset))).toBe(true);
    }
    await store.close();
    expect(io.paths.size).toBe(0);
    expect(io.maxOpen).toBeGreaterThan(2);
    expect(io.maxOpen).toBeLessThanOrEqual(CAP + OUTSIDE_CAP);
  });

  it.each<FsyncMode>(['never', 'always'])(
    'fsync %s: a topic whose files the cap closed reads its old sealed segment and appends again; no file changed meanwhile',
    async fsync => {
      const io = new PathTrackingIO();
      const store = await openFile(dir, { io, fsync, maxOpenFiles: 4, cacheBytes: 0 });
      const cfg = topicConfig();
      const a = await store.openTopic('a', cfg);
      await Promise.all(appendRange(a, 'a', 0, 10));
      const logs = readdirSync(join(dir, 'topics/a')).filter(f => f.endsWith('.log')).sort();
      expect(logs.length).toBe(3);
      const before = snapshot(dir, 'a');

      // Two more topics writing take all 4 fds: a's files are closed.
      await writeUntilClosed(io, 'a', { b: await store.openTopic('b', cfg), c: await store.openTopic('c', cfg) });
      const closed = snapshot(dir, 'a');
      // Closed, not cut: preallocated zeros (fsync 'always', up to segmentBytes) and index entries are all still there.
      if (fsync === 'never') expect(closed).toEqual(before);
      else expect(closed[logs[2]].length).toBe(cfg.segmentBytes);
      expect(closed[logs[2].replace('.log', '.index')]).toEqual(before[logs[2].replace('.log', '.index')]);

      await expectRecords(a, 'a', [0, 1, 4, 9]);
      expect(await a.offsetForTimestamp(0)).toBe(0);
      // Reads use fds of their own: the closed files stay as they were.
      expect(snapshot(dir, 'a')).toEqual(closed);
      await Promise.all(appendRange(a, 'a', 10, 12));
      expect((await a.read(0, 100)).map(r => r.offset)).toEqual([...Array(12).keys()]);
      await expectRecords(a, 'a', [9, 10, 11]);
      await store.close();
      expect(io.maxOpen).toBeLessThanOrEqual(4 + OUTSIDE_CAP);
      expect(io.paths.size).toBe(0);
    },
  );

  it('a reopen that fails (EMFILE) fails that topic with STORAGE only; the others keep working', async () => {
    const emfile = () => Object.assign(new Error('EMFILE: too many open files (injected)'), { code: 'EMFILE' });
    /** Opens of files under topics/<failIn>/ fail, as when the process is out of fds. */
    class ReopenFails extends PathTrackingIO {
      failIn: string | null = null;
      override open(path: string, flags: string): Promise<number> {
        if (this.failIn && path.includes(`/topics/${this.failIn}/`)) return Promise.reject(emfile());
        return super.open(path, flags);
      }
    }
    const io = new ReopenFails();
    const store = await openFile(dir, { io, fsync: 'always', maxOpenFiles: 4, cacheBytes: 0 });
    const cfg = topicConfig();
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map(n => store.openTopic(n, cfg)));
    await Promise.all(appendRange(a, 'a', 0, 6));
    await writeUntilClosed(io, 'a', { b, c });

    io.failIn = 'a';
    await expect(a.read(0, 1)).rejects.toMatchObject({ code: 'STORAGE', message: expect.stringContaining('EMFILE') });
    await expect(append(a, 'a', 6).durable).rejects.toMatchObject({ code: 'STORAGE', message: expect.stringContaining('EMFILE') });
    expect(() => append(a, 'a', 7)).toThrow(expect.objectContaining({ code: 'STORAGE' }));

    // No fd is leaked by the failures: with a cap of 4, b and c still get theirs, again and again.
    for (let round = 0; round < 3; round++) {
      const [nb, nc] = [b.nextOffset, c.nextOffset];
      await Promise.all([append(b, 'b', nb).durable, append(c, 'c', nc).durable]);
      await expectRecords(b, 'b', [0, nb]);
      await expectRecords(c, 'c', [0, nc]);
    }
    io.failIn = null;
    await expectRecords(a, 'a', [0, 5]);
    await store.close();
    expect(io.paths.size).toBe(0);
  });

  it.each<'always' | 'interval'>(['always', 'interval'])(
    'fsync %s, a cap of 4 files: power losses at any step never lose an acknowledged append nor leave damage',
    async fsync => {
      // Two topics, each with an active segment, plus readers: files close and reopen all the time.
      let losses = 0;
      for (let seed = 1; seed <= 6; seed++) losses += (await powerLossRound(seed, dir, 10, fsync, 4)).losses;
      expect(losses).toBeGreaterThanOrEqual(60);
    },
    60_000,
  );

  it('rejects a cap too small for a segment and a reader', async () => {
    await expect(openFile(dir, { maxOpenFiles: 3 })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(openFile(dir, { maxOpenFiles: 1.5 })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  });
});
