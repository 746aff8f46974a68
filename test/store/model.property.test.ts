import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { MemoryStore } from '../../lib/store/memory-store.js';
import type { LogRecord, LogStore, TopicLog } from '../../lib/store/types.js';
import { openFile, removeDir, tempDir, topicConfig } from './helpers.js';

interface ModelRecord {
  timestamp: number;
  key: string | undefined;
  headers: Record<string, string>;
  value: string; // hex
}

type Op =
  | { t: 'append'; dt: number; recs: { key: string | undefined; headers: Record<string, string> | undefined; value: Uint8Array }[] }
  | { t: 'read'; from: number; max: number; flushFirst: boolean }
  | { t: 'time'; ts: number }
  | { t: 'reopen' };

const recordArb = fc.record({
  key: fc.option(fc.string({ maxLength: 12 }), { nil: undefined }),
  headers: fc.option(fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }), { nil: undefined }),
  value: fc.uint8Array({ maxLength: 700 }),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('append' as const), dt: fc.integer({ min: -5, max: 5 }), recs: fc.array(recordArb, { minLength: 1, maxLength: 5 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('read' as const), from: fc.nat(80), max: fc.integer({ min: 1, max: 60 }), flushFirst: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('time' as const), ts: fc.integer({ min: 985, max: 1015 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
);

const plain = (r: LogRecord): ModelRecord & { offset: number } => ({
  offset: r.offset,
  timestamp: r.timestamp,
  key: r.key,
  headers: r.headers,
  value: Buffer.from(r.value).toString('hex'),
});

async function runAgainstModel(ops: Op[], open: () => Promise<LogStore>, reopenable: boolean, segmentBytes = 4096): Promise<void> {
  const cfg = topicConfig({ segmentBytes });
  const model: ModelRecord[] = [];
  let store = await open();
  let log: TopicLog = await store.openTopic('m', cfg);
  let now = 1000;
  try {
    for (const op of ops) {
      if (op.t === 'append') {
        now += op.dt; // the clock may step back: timestamps are not monotone
        const r = log.append(
          op.recs.map(x => ({ key: x.key, headers: x.headers, value: Buffer.from(x.value) })),
          now,
        );
        expect(r.baseOffset).toBe(model.length);
        for (const x of op.recs) model.push({ timestamp: now, key: x.key, headers: { ...(x.headers ?? {}) }, value: Buffer.from(x.value).toString('hex') });
        expect(log.nextOffset).toBe(model.length);
      } else if (op.t === 'read') {
        if (op.flushFirst) await log.flush();
        const got = (await log.read(op.from, op.max)).map(plain);
        const want = model.slice(op.from, op.from + op.max).map((m, i) => ({ offset: op.from + i, ...m }));
        if (op.flushFirst) expect(got).toEqual(want);
        else expect(got).toEqual(want.slice(0, got.length)); // unflushed: a prefix, never more
      } else if (op.t === 'time') {
        await log.flush();
        const idx = model.findIndex(m => m.timestamp >= op.ts);
        expect(await log.offsetForTimestamp(op.ts)).toBe(idx < 0 ? model.length : idx);
      } else if (reopenable) {
        await store.close();
        store = await open();
        log = await store.openTopic('m', cfg);
        expect(log.nextOffset).toBe(model.length);
      }
    }
    await log.flush();
    expect((await log.read(0, 10_000)).map(plain)).toEqual(model.map((m, i) => ({ offset: i, ...m })));
  } finally {
    await store.close();
  }
}

describe('log against an array model (fast-check)', () => {
  it('FileStore: append / read / offsetForTimestamp / reopen', async () => {
    // cacheBytes 0: every read from disk; 2048: reads straddle the cache and the disk.
    // 64 KiB segments hold many sparse index entries; 4 KiB ones roll often.
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 40 }),
        fc.constantFrom(0, 2048, 4 << 20),
        fc.constantFrom(4096, 65536),
        async (ops, cacheBytes, segmentBytes) => {
        const dir = tempDir();
        try {
            await runAgainstModel(ops, () => openFile(dir, { cacheBytes }), true, segmentBytes);
          } finally {
            removeDir(dir);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('MemoryStore: append / read / offsetForTimestamp', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async ops => {
        const mem = new MemoryStore();
        await runAgainstModel(ops, async () => mem, false);
      }),
      { numRuns: 100 },
    );
  });
});
