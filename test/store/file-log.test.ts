import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LogBusError } from '../../lib/errors.js';
import { FileStore } from '../../lib/store/file-store.js';
import { MemoryStore, openStore } from '../../lib/store/index.js';
import type { AppendRecord, LogRecord, LogStore } from '../../lib/store/types.js';
import { openFile, removeDir, tempDir, topicConfig } from './helpers.js';

const rec = (value: string, key?: string, headers?: Record<string, string>): AppendRecord => ({ key, headers, value: Buffer.from(value) });
const plain = (r: LogRecord) => ({ offset: r.offset, timestamp: r.timestamp, key: r.key, headers: r.headers, value: r.value.toString('hex') });
const segmentsOf = (dir: string, topic: string) => readdirSync(join(dir, 'topics', topic)).filter(f => f.endsWith('.log')).sort();

describe('FileStore topic log', () => {
  let dir: string;
  let store: FileStore;
  beforeEach(async () => {
    dir = tempDir();
    store = await openFile(dir);
  });
  afterEach(async () => {
    await store.close();
    removeDir(dir);
  });

  it('round-trips exact bytes, keys, headers, offsets and timestamps', async () => {
    const log = await store.openTopic('orders', topicConfig({ segmentBytes: 1 << 20 }));
    const binary = Buffer.from([0, 255, 1, 254, 10, 13]);
    const a = log.append([rec('one', 'k1', { trace: 'abc', 'ü-name': 'välue' }), { key: '', headers: {}, value: binary }], 1000);
    const b = log.append([{ key: undefined, headers: undefined, value: Buffer.alloc(0) }], 2000);
    expect(a.baseOffset).toBe(0);
    expect(b.baseOffset).toBe(2);
    expect(log.nextOffset).toBe(3);
    await Promise.all([a.durable, b.durable]);
    const got = (await log.read(0, 100)).map(plain);
    expect(got).toEqual([
      { offset: 0, timestamp: 1000, key: 'k1', headers: { trace: 'abc', 'ü-name': 'välue' }, value: Buffer.from('one').toString('hex') },
      { offset: 1, timestamp: 1000, key: '', headers: {}, value: binary.toString('hex') },
      { offset: 2, timestamp: 2000, key: undefined, headers: {}, value: '' },
    ]);
    expect((await log.read(1, 1)).map(r => r.offset)).toEqual([1]);
    expect(await log.read(3, 10)).toEqual([]);
  });

  it('rolls segments at segmentBytes and reads across them, also after reopen', async () => {
    const log = await store.openTopic('t', topicConfig({ segmentBytes: 4096 }));
    const values: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const v = Buffer.alloc(50 + (i % 90), i % 251);
      values.push(v);
      log.append([{ key: `k${i}`, headers: undefined, value: v }], 10_000 + i);
    }
    await log.flush();
    const segs = segmentsOf(dir, 't');
    expect(segs.length).toBeGreaterThan(5);
    const all = await log.read(0, 1000);
    expect(all.map(r => r.offset)).toEqual(values.map((_, i) => i));
    all.forEach((r, i) => expect(r.value.equals(values[i])).toBe(true));

    await store.close();
    store = await openFile(dir);
    const again = await store.openTopic('t', topicConfig({ segmentBytes: 4096 }));
    expect(again.nextOffset).toBe(300);
    const reread = await again.read(0, 1000);
    expect(reread.map(plain)).toEqual(all.map(plain));
    // Appends continue after the reopened end, contiguous.
    const r = again.append([rec('after')], 99_999);
    expect(r.baseOffset).toBe(300);
    await r.durable;
    expect((await again.read(299, 10)).map(x => x.offset)).toEqual([299, 300]);
  });

  it('reads by offset and by timestamp exactly at segment boundaries', async () => {
    const log = await store.openTopic('t', topicConfig({ segmentBytes: 4096 }));
    for (let i = 0; i < 200; i++) log.append([rec('x'.repeat(100), undefined)], 1_000 + i * 10);
    await log.flush();
    const bases = segmentsOf(dir, 't').map(f => Number(f.slice(0, 20)));
    expect(bases.length).toBeGreaterThan(3);
    await store.close();
    store = await openFile(dir); // sealed segments now load their indexes lazily
    const again = await store.openTopic('t', topicConfig({ segmentBytes: 4096 }));
    for (const b of bases.slice(1)) {
      for (const off of [b - 1, b, b + 1]) {
        const got = await again.read(off, 3);
        expect(got.map(r => r.offset)).toEqual([off, off + 1, off + 2]);
        expect(got[0].timestamp).toBe(1_000 + off * 10);
        // The first offset whose timestamp >= ts, for ts on and just after a record's time.
        expect(await again.offsetForTimestamp(1_000 + off * 10)).toBe(off);
        expect(await again.offsetForTimestamp(1_000 + off * 10 - 5)).toBe(off);
      }
    }
    expect(await again.offsetForTimestamp(0)).toBe(0);
    expect(await again.offsetForTimestamp(1_000 + 199 * 10 + 1)).toBe(200);
  });

  it('finds offsets by timestamp when the clock steps back, from the sparse index, also after reopen', async () => {
    const cfg = topicConfig({ segmentBytes: 1 << 20 });
    const log = await store.openTopic('t', cfg);
    log.append([rec('x'.repeat(1000))], 500); // offset 0, newest time first
    for (let i = 1; i <= 60; i++) log.append([rec('x'.repeat(1000))], 100 + i); // many index entries later
    await log.flush();
    const check = async (l: typeof log) => {
      expect(await l.offsetForTimestamp(300)).toBe(0); // only offset 0 is that new, and it comes first
      expect(await l.offsetForTimestamp(500)).toBe(0);
      expect(await l.offsetForTimestamp(501)).toBe(61);
      expect(await l.offsetForTimestamp(0)).toBe(0);
    };
    await check(log);
    await store.close();
    store = await openFile(dir);
    await check(await store.openTopic('t', cfg));
  });

  it('honours maxRecords and maxBytes (at least one record)', async () => {
    const log = await store.openTopic('t', topicConfig());
    for (let i = 0; i < 20; i++) log.append([rec('y'.repeat(100))]);
    await log.flush();
    expect((await log.read(0, 5)).length).toBe(5);
    expect((await log.read(0, 100, 250)).length).toBe(2);
    expect((await log.read(3, 100, 1)).map(r => r.offset)).toEqual([3]);
  });

  it('assigns offsets synchronously and contiguously across concurrent appends', async () => {
    const log = await store.openTopic('t', topicConfig());
    const results = Array.from({ length: 50 }, (_, i) => log.append([rec(`a${i}`), rec(`b${i}`)]));
    expect(results.map(r => r.baseOffset)).toEqual(results.map((_, i) => i * 2));
    await Promise.all(results.map(r => r.durable));
    const got = await log.read(0, 1000);
    expect(got.map(r => r.value.toString())).toEqual(results.flatMap((_, i) => [`a${i}`, `b${i}`]));
  });

  it('rejects MESSAGE_TOO_LARGE synchronously and stores nothing', async () => {
    const log = await store.openTopic('t', topicConfig({ maxMessageBytes: 1000 }));
    log.append([rec('ok')]);
    let err: unknown;
    try {
      log.append([rec('fine'), { key: undefined, headers: undefined, value: Buffer.alloc(1001) }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LogBusError);
    expect((err as LogBusError).code).toBe('MESSAGE_TOO_LARGE');
    expect(log.nextOffset).toBe(1);
    await log.flush();
    await store.close();
    store = await openFile(dir);
    const again = await store.openTopic('t', topicConfig({ maxMessageBytes: 1000 }));
    expect((await again.read(0, 10)).map(r => r.value.toString())).toEqual(['ok']);
  });

  it('rejects bad topic names before touching the filesystem', async () => {
    for (const name of ['../etc', 'a/b', '', 'a..b', 'x'.repeat(250)]) {
      await expect(store.openTopic(name, topicConfig())).rejects.toMatchObject({ code: 'INVALID_TOPIC' });
    }
    expect(readdirSync(join(dir, 'topics'))).toEqual([]);
  });

  it('lists topics across reopen and deletes a topic entirely', async () => {
    await store.openTopic('a', topicConfig());
    const b = await store.openTopic('b.c', topicConfig());
    b.append([rec('x')]);
    await b.flush();
    expect(store.topicNames().sort()).toEqual(['a', 'b.c']);
    await store.deleteTopic('a');
    await store.close();
    store = await openFile(dir);
    expect(store.topicNames()).toEqual(['b.c']);
    const a = await store.openTopic('a', topicConfig());
    expect(a.nextOffset).toBe(0);
  });

  describe('retention', () => {
    it('deletes whole sealed segments older than maxAgeMs, never the active one, and moves earliestOffset', async () => {
      const cfg = topicConfig({ segmentBytes: 4096, retention: { maxAgeMs: 1000, maxBytes: Number.MAX_SAFE_INTEGER } });
      const log = await store.openTopic('t', cfg);
      // Old records (t=0..), then new ones (t=100000..).
      for (let i = 0; i < 100; i++) log.append([rec('o'.repeat(100))], i);
      for (let i = 0; i < 100; i++) log.append([rec('n'.repeat(100))], 100_000 + i);
      await log.flush();
      const before = segmentsOf(dir, 't');
      // now = 100_500: every segment holding only old records is past maxAge; mixed/new ones are not.
      const { deletedSegments } = await log.enforceRetention(100_500);
      expect(deletedSegments).toBeGreaterThan(0);
      const after = segmentsOf(dir, 't');
      expect(after).toEqual(before.slice(deletedSegments));
      const earliest = Number(after[0].slice(0, 20));
      expect(log.earliestOffset).toBe(earliest);
      expect(earliest).toBeLessThanOrEqual(100); // no new record is lost
      const first = await log.read(0, 1);
      expect(first[0].offset).toBe(earliest); // below earliest clamps up
      // Far in the future: everything sealed goes, the active segment stays.
      await log.enforceRetention(10_000_000);
      expect(segmentsOf(dir, 't')).toEqual([before[before.length - 1]]);
      expect(log.earliestOffset).toBe(Number(before[before.length - 1].slice(0, 20)));
      expect((await log.read(0, 1000)).at(-1)!.offset).toBe(199);
      await store.close();
      store = await openFile(dir);
      const again = await store.openTopic('t', cfg);
      expect(again.earliestOffset).toBe(log.earliestOffset);
      expect(again.nextOffset).toBe(200);
    });

    it('deletes oldest segments while the topic exceeds maxBytes', async () => {
      const cfg = topicConfig({ segmentBytes: 4096, retention: { maxAgeMs: Number.MAX_SAFE_INTEGER, maxBytes: 10_000 } });
      const log = await store.openTopic('t', cfg);
      for (let i = 0; i < 300; i++) log.append([rec('z'.repeat(100))]);
      await log.flush();
      const { deletedSegments } = await log.enforceRetention();
      expect(deletedSegments).toBeGreaterThan(0);
      expect(log.sizeBytes).toBeLessThanOrEqual(10_000);
      // It stops as soon as the topic fits: one segment more would have fit too.
      expect(log.sizeBytes + 4096).toBeGreaterThan(10_000);
      expect((await log.read(0, 1000)).at(-1)!.offset).toBe(299);
    });
  });
});

describe.each([
  ['FileStore', (dir: string) => openFile(dir)],
  ['MemoryStore', async () => new MemoryStore() as LogStore],
])('%s: the same rules for bad input', (_name, open) => {
  it('rejects bad records and oversized messages with a code, storing nothing', async () => {
    const dir = tempDir();
    const store = await open(dir);
    try {
      const log = await store.openTopic('t', topicConfig({ maxMessageBytes: 100 }));
      const bad: [string, () => unknown][] = [
        ['INVALID_ARGUMENT', () => log.append([])],
        ['INVALID_ARGUMENT', () => log.append([{ key: 5 as unknown as string, headers: undefined, value: Buffer.from('x') }])],
        ['INVALID_ARGUMENT', () => log.append([{ key: undefined, headers: { a: 1 as unknown as string }, value: Buffer.from('x') }])],
        ['INVALID_ARGUMENT', () => log.append([{ key: undefined, headers: undefined, value: 'text' as unknown as Buffer }])],
        ['INVALID_ARGUMENT', () => log.append([rec('x')], Number.NaN)],
        ['MESSAGE_TOO_LARGE', () => log.append([rec('ok'), rec('y'.repeat(101))])],
        ['MESSAGE_TOO_LARGE', () => log.append([rec('ok', 'k'.repeat(70_000))])],
      ];
      for (const [code, fn] of bad) expect(fn).toThrow(expect.objectContaining({ code }));
      expect(log.nextOffset).toBe(0);
      // A reused buffer changed after append does not change what was stored.
      const value = Buffer.from('abc');
      log.append([{ key: undefined, headers: undefined, value }]);
      value.write('zzz');
      await log.flush();
      expect((await log.read(0, 10)).map(r => r.value.toString())).toEqual(['abc']);
    } finally {
      await store.close();
      removeDir(dir);
    }
  });
});

describe('openStore', () => {
  it("returns the memory twin for ':memory:' and a locked FileStore for a path", async () => {
    const mem = await openStore({ dataDir: ':memory:', fsync: 'always' });
    expect(mem).toBeInstanceOf(MemoryStore);
    const dir = tempDir();
    let file: LogStore | undefined;
    try {
      file = await openStore({ dataDir: dir, fsync: 'always', logger: { warn: () => {}, error: () => {} } });
      expect(file).toBeInstanceOf(FileStore);
      await expect(openStore({ dataDir: dir, fsync: 'always' })).rejects.toMatchObject({ code: 'LOCKED' });
    } finally {
      await file?.close();
      removeDir(dir);
    }
  });
});
