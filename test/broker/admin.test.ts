import { afterEach, describe, expect, it } from '@jest/globals';
import type { Broker } from '../../lib/broker/broker.js';
import type { Delivery } from '../../lib/connection/types.js';
import { buf, codeOf, MemoryLogger, openBroker, produceMany, spec, text, until } from './helpers.js';

let broker: Broker;
let logger: MemoryLogger;
afterEach(async () => {
  await broker?.close();
});

async function setup(opts: Parameters<typeof openBroker>[0] = {}) {
  ({ broker, logger } = await openBroker(opts));
  return broker.connect();
}

describe('produce checks: a rejected publish stores nothing', () => {
  it('INVALID_TOPIC for wildcards, empty segments and bad characters', async () => {
    const c = await setup();
    for (const t of ['orders.*', 'orders.>', 'a..b', '', 'a/b', 'x'.repeat(250)]) {
      expect(await codeOf(c.produce(t, [{ value: buf('x') }]))).toBe('INVALID_TOPIC');
    }
    expect(await c.topics()).toEqual([]);
  });

  it('MESSAGE_TOO_LARGE rejects the whole batch', async () => {
    const c = await setup({ topics: { small: { maxMessageBytes: 10 }, 'volatile.small': { durable: false, maxMessageBytes: 10 } } });
    const got: Delivery[] = [];
    await c.subscribe({ pattern: '>' }, d => got.push(d));
    expect(await codeOf(c.produce('small', [{ value: buf('ok') }, { value: buf('x'.repeat(11)) }]))).toBe('MESSAGE_TOO_LARGE');
    expect(await codeOf(c.produce('volatile.small', [{ value: buf('x'.repeat(11)) }]))).toBe('MESSAGE_TOO_LARGE');
    expect(await c.read('small', 'earliest', 10)).toEqual([]);
    // Refused before the topic is created: no empty topic (or directory) is left behind.
    expect((await c.topics()).find(t => t.name === 'small')).toBeUndefined();
    expect(got).toEqual([]);
    expect((await c.stats()).published).toBe(0);
    await c.produce('small', [{ value: buf('fits') }]);
    expect((await c.read('small', 'earliest', 10)).map(text)).toEqual(['fits']);
  });

  it('INVALID_ARGUMENT for non-string headers, non-Buffer values and oversized batches', async () => {
    const c = await setup();
    expect(await codeOf(c.produce('t', [{ value: buf('x'), headers: { n: 1 as unknown as string } }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.produce('t', [{ value: 'x' as unknown as Buffer }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.produce('t', [{ value: buf('x'), key: 5 as unknown as string }]))).toBe('INVALID_ARGUMENT');
    const big = Array.from({ length: 10_001 }, () => ({ value: buf('x') }));
    expect(await codeOf(c.produce('t', big))).toBe('INVALID_ARGUMENT');
    expect(await c.topics()).toEqual([]);
  });
});

describe('read, topics, createTopic, stats', () => {
  it('read returns stored messages oldest first, from an offset, clamped to max', async () => {
    const c = await setup();
    await c.produce('t', [{ value: buf('a'), key: 'k', headers: { h: '1' } }, { value: buf('b') }, { value: buf('c') }]);
    const all = await c.read('t', 'earliest', 100);
    expect(all.map(m => [m.offset, text(m), m.key, m.headers])).toEqual([
      [0, 'a', 'k', { h: '1' }],
      [1, 'b', undefined, {}],
      [2, 'c', undefined, {}],
    ]);
    expect((await c.read('t', 1, 1)).map(text)).toEqual(['b']);
    expect(await c.read('t', 3, 10)).toEqual([]);
    expect(await c.read('never-used', 'earliest', 10)).toEqual([]);
    expect(await codeOf(c.read('t', -1, 10))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.read('t', 0, 0))).toBe('INVALID_ARGUMENT');
  });

  it('topics() lists durable and non-durable topics with their offsets and bytes', async () => {
    const c = await setup({ topics: { 'live.*': { durable: false } } });
    await produceMany(c, 'b', 3);
    await c.produce('live.x', [{ value: buf('x') }]);
    const list = await c.topics();
    expect(list.map(t => t.name)).toEqual(['b', 'live.x']);
    expect(list[0]).toMatchObject({ durable: true, earliestOffset: 0, nextOffset: 3 });
    expect(list[0].bytes).toBeGreaterThan(0);
    expect(list[1]).toMatchObject({ durable: false, nextOffset: 0 });
  });

  it('createTopic configures before use, is a no-op with the same config, refuses a conflicting one', async () => {
    const c = await setup();
    await c.createTopic('cfg', { durable: false });
    await c.createTopic('cfg', { durable: false });
    expect((await c.topics()).find(t => t.name === 'cfg')?.durable).toBe(false);
    expect(await codeOf(c.createTopic('cfg', { durable: true }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.createTopic('cfg2', { segmentBytes: 1 }))).toBe('INVALID_OPTION');
    expect(await codeOf(c.createTopic('cfg.*', {}))).toBe('INVALID_TOPIC');
    const r = await c.produce('cfg', [{ value: buf('x') }]);
    expect(r[0].offset).toBeUndefined();
    // persisted in the store: a broker opened on the same store knows it
    expect(await broker.store.loadTopicConfigs()).toEqual({ cfg: { durable: false } });
  });

  it('stats() counts published, delivered, redelivered', async () => {
    const c = await setup();
    await c.subscribe({ pattern: 't' }, () => undefined);
    let first = true;
    const consumer = await c.consume(spec('t', 'g', { backoffMs: [0] }), d => {
      if (first) {
        first = false;
        consumer.nack(d, 'once');
      } else consumer.ack(d);
    });
    await produceMany(c, 't', 2);
    await until(() => !first, 'nack');
    await until(() => broker.stats.delivered === 5, '2 push + 3 pull deliveries');
    const s = await c.stats();
    expect(s).toMatchObject({ published: 2, delivered: 5, redelivered: 1, deadLettered: 0, dropped: {} });
  });
});

describe('retention', () => {
  it('is visible through topics(): old segments go once the topic is over maxBytes', async () => {
    const c = await setup({ topics: { ret: { segmentBytes: 4096, retention: { maxBytes: 8192 } } } });
    for (let i = 0; i < 40; i++) await c.produce('ret', [{ value: Buffer.alloc(500, i) }]);
    const before = (await c.topics())[0];
    expect(before.earliestOffset).toBe(0);
    await broker.enforceRetention();
    const after = (await c.topics())[0];
    expect(after.earliestOffset).toBeGreaterThan(0);
    expect(after.nextOffset).toBe(40);
    expect(after.bytes).toBeLessThan(before.bytes);
    expect(after.bytes).toBeLessThanOrEqual(8192 + 4096);
    const first = (await c.read('ret', 'earliest', 1))[0];
    expect(first.offset).toBe(after.earliestOffset);
  });

  it('a group behind the earliest offset skips ahead and says so', async () => {
    const c = await setup({ topics: { ret: { segmentBytes: 4096, retention: { maxBytes: 4096 } } } });
    await c.resetGroup('ret', 'late', 'earliest');
    for (let i = 0; i < 40; i++) await c.produce('ret', [{ value: Buffer.alloc(500, i) }]);
    await broker.enforceRetention();
    const earliest = (await c.topics())[0].earliestOffset;
    expect(earliest).toBeGreaterThan(0);
    const got: Delivery[] = [];
    const consumer = await c.consume(spec('ret', 'late'), d => {
      got.push(d);
      consumer.ack(d);
    });
    await until(() => got.length === 40 - earliest, 'the rest');
    expect(got[0].offset).toBe(earliest);
    expect(logger.warnings.some(w => w.includes("group 'late'") && w.includes('retention'))).toBe(true);
  });
});

describe('produce calls of one tick share a store batch', () => {
  it('keeps call order and contiguous offsets, and a call the store refuses fails alone', async () => {
    const { MemoryStore } = await import('../../lib/store/memory-store.js');
    const { Broker } = await import('../../lib/broker/broker.js');
    const store = new MemoryStore();
    const appends: number[] = [];
    const openTopic = store.openTopic.bind(store);
    store.openTopic = async (name, config) => {
      const log = await openTopic(name, config);
      const append = log.append.bind(log);
      // A store that refuses any batch holding a record marked 'refuse'.
      log.append = (records, now) => {
        if (records.some(r => r.headers?.mark === 'refuse')) throw new Error('refused by the store');
        appends.push(records.length);
        return append(records, now);
      };
      return log;
    };
    const b = await Broker.open({ dataDir: ':memory:', store, logger: new MemoryLogger(), retentionCheckMs: 0 });
    try {
      const c = b.connect();
      await c.produce('t', [{ value: buf('warm-up') }]); // opens the topic
      appends.length = 0;
      const calls = [
        c.produce('t', [{ value: buf('a') }]),
        c.produce('t', [{ value: buf('b') }, { value: buf('c') }]),
        c.produce('t', [{ value: buf('bad'), headers: { mark: 'refuse' } }]),
        c.produce('t', [{ value: buf('d') }]),
      ];
      const settled = await Promise.allSettled(calls);
      expect(settled.map(s => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
      const offsets = settled.map(s => (s.status === 'fulfilled' ? s.value.map(r => r.offset) : null));
      expect(offsets).toEqual([[1], [2, 3], null, [4]]);
      expect((await c.read('t', 1, 10)).map(text)).toEqual(['a', 'b', 'c', 'd']);

      appends.length = 0;
      await Promise.all([c.produce('t', [{ value: buf('x') }]), c.produce('t', [{ value: buf('y') }])]);
      expect(appends).toEqual([2]); // one store append for both calls
    } finally {
      await b.close();
    }
  });

  it('refuses oversized key+headers with MESSAGE_TOO_LARGE on every store', async () => {
    const c = await setup();
    expect(await codeOf(c.produce('t', [{ value: buf('x'), headers: { big: 'y'.repeat(70_000) } }]))).toBe('MESSAGE_TOO_LARGE');
    expect(await c.topics()).toEqual([]);
  });
});

describe('retention timer', () => {
  it('runs every retentionCheckMs by itself', async () => {
    const { Broker } = await import('../../lib/broker/broker.js');
    const b = await Broker.open({
      dataDir: ':memory:',
      topics: { ret: { segmentBytes: 4096, retention: { maxBytes: 4096 } } },
      retentionCheckMs: 10,
      logger: new MemoryLogger(),
    });
    try {
      const c = b.connect();
      for (let i = 0; i < 30; i++) await c.produce('ret', [{ value: Buffer.alloc(500, i) }]);
      let earliest = 0;
      for (let i = 0; i < 500 && earliest === 0; i++) {
        earliest = (await c.topics())[0].earliestOffset;
        await new Promise(r => setTimeout(r, 5));
      }
      expect(earliest).toBeGreaterThan(0);
    } finally {
      await b.close();
    }
  });
});

describe('storage failures', () => {
  it('a publish whose write fails rejects with STORAGE and reaches no subscriber or group', async () => {
    const { MemoryStore } = await import('../../lib/store/memory-store.js');
    const { Broker } = await import('../../lib/broker/broker.js');
    const { LogBusError } = await import('../../lib/errors.js');
    const store = new MemoryStore();
    let failWrites = false;
    const openTopic = store.openTopic.bind(store);
    store.openTopic = async (name, config) => {
      const log = await openTopic(name, config);
      const append = log.append.bind(log);
      log.append = (records, now) => {
        const res = append(records, now);
        return failWrites ? { ...res, durable: Promise.reject(new LogBusError('STORAGE', 'disk full (ENOSPC)')) } : res;
      };
      return log;
    };
    const b = await Broker.open({ dataDir: ':memory:', store, logger: new MemoryLogger(), retentionCheckMs: 0 });
    try {
      const c = b.connect();
      const pushed: Delivery[] = [];
      const pulled: Delivery[] = [];
      await c.subscribe({ pattern: 't' }, d => pushed.push(d));
      const consumer = await c.consume(spec('t', 'g'), d => {
        pulled.push(d);
        consumer.ack(d);
      });
      await c.produce('t', [{ value: buf('ok') }]);
      await until(() => pulled.length === 1, 'the first message');
      failWrites = true;
      expect(await codeOf(c.produce('t', [{ value: buf('lost') }]))).toBe('STORAGE');
      expect(pushed.map(text)).toEqual(['ok']);
      expect(pulled.map(text)).toEqual(['ok']);
    } finally {
      await b.close();
    }
  });
});
