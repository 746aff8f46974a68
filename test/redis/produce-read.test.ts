import type { Redis } from 'ioredis';
import { isLogBusError } from '../../lib/errors.js';
import { importIoredis } from '../../lib/connection/redis/client.js';
import { RedisConnection } from '../../lib/connection/redis/index.js';
import { resolveOptions } from '../../lib/options.js';
import { Bus, buf, deleteKeys, requireRedis, sleep, text, uniquePrefix, waitFor } from './helpers.js';

let admin: Redis;
const prefix = uniquePrefix();
const bus = new Bus(prefix);

beforeAll(async () => {
  admin = await requireRedis();
});
afterAll(async () => {
  await bus.closeAll();
  await deleteKeys(admin, prefix);
  admin.disconnect();
});

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    err => err,
  );
  expect(isLogBusError(e)).toBe(true);
  expect((e as { code: string }).code).toBe(code);
}

describe('Redis driver: produce and read', () => {
  test('offsets start at 0 and go up by one per message, across batches and connections', async () => {
    const a = await bus.connection();
    const b = await bus.connection();
    const first = await a.produce('orders', [{ value: buf('m0') }]);
    const batch = await b.produce('orders', [{ value: buf('m1') }, { value: buf('m2'), key: 'k' }, { value: buf('m3') }]);
    const last = await a.produce('orders', [{ value: buf('m4'), headers: { h: 'v' } }]);
    expect([...first, ...batch, ...last].map(r => r.offset)).toEqual([0, 1, 2, 3, 4]);
    expect(batch.every(r => r.topic === 'orders')).toBe(true);

    const all = await a.read('orders', 'earliest', 100);
    expect(all.map(m => m.offset)).toEqual([0, 1, 2, 3, 4]);
    expect(all.map(text)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(all[2].key).toBe('k');
    expect(all[0].key).toBeUndefined();
    expect(all[4].headers).toEqual({ h: 'v' });
    expect(all[0].headers).toEqual({});
    for (let i = 1; i < all.length; i++) expect(all[i].timestamp).toBeGreaterThanOrEqual(all[i - 1].timestamp);
    expect(Math.abs(all[0].timestamp - Date.now())).toBeLessThan(60_000);

    expect((await a.read('orders', 3, 10)).map(text)).toEqual(['m3', 'm4']);
    expect((await a.read('orders', 1, 2)).map(m => m.offset)).toEqual([1, 2]);
    expect(await a.read('orders', 5, 10)).toEqual([]);
  });

  test('stats() are bus-wide, as on one shared broker', async () => {
    const own = new Bus(uniquePrefix());
    try {
      const a = await own.connection();
      const b = await own.connection();
      const got: string[] = [];
      await b.subscribe({ pattern: 'counted' }, d => got.push(text(d)));
      await a.produce('counted', [{ value: buf('1') }, { value: buf('2') }]);
      await b.produce('counted', [{ value: buf('3') }]);
      await waitFor('deliveries', () => got.length === 3);
      await waitFor('counters from both connections', async () => {
        const s = await a.stats();
        return s.published === 3 && s.delivered === 3;
      });
      expect(await b.stats()).toEqual({ published: 3, delivered: 3, dropped: {}, redelivered: 0, deadLettered: 0 });
    } finally {
      await own.closeAll();
      await deleteKeys(admin, own.prefix);
    }
  });

  test('concurrent producers never share or skip an offset', async () => {
    const conns = await Promise.all([bus.connection(), bus.connection(), bus.connection()]);
    const results = await Promise.all(
      conns.flatMap((c, ci) => Array.from({ length: 20 }, (_, i) => c.produce('race', [{ value: buf(`${ci}-${i}`) }, { value: buf(`${ci}-${i}b`) }]))),
    );
    const offsets = results.flat().map(r => r.offset!).sort((x, y) => x - y);
    expect(offsets).toEqual(Array.from({ length: 120 }, (_, i) => i));
    const stored = await conns[0].read('race', 'earliest', 1000);
    expect(stored.map(m => m.offset)).toEqual(offsets);
    // a batch is contiguous
    for (const r of results) expect(r[1].offset).toBe(r[0].offset! + 1);
  });

  test('produce calls made together from one connection keep their order and their batches whole', async () => {
    const c = await bus.connection();
    const calls = Array.from({ length: 50 }, (_, i) =>
      c.produce('together', Array.from({ length: 1 + (i % 3) }, (_, j) => ({ value: buf(`${i}.${j}`) }))),
    );
    const results = await Promise.all(calls);
    let next = 0;
    for (const r of results) {
      for (const m of r) expect(m.offset).toBe(next++);
    }
    const stored = await c.read('together', 'earliest', 1000);
    expect(stored.map(text)).toEqual(results.flatMap((r, i) => r.map((_, j) => `${i}.${j}`)));
  });

  test('bad topic, too large message or bad headers: an error with a code, and nothing stored', async () => {
    const c = await bus.connection({ topics: { 'small.*': { maxMessageBytes: 10 } } });
    await rejects(c.produce('bad topic', [{ value: buf('x') }]), 'INVALID_TOPIC');
    await rejects(c.produce('orders.*', [{ value: buf('x') }]), 'INVALID_TOPIC');
    await rejects(c.produce('a..b', [{ value: buf('x') }]), 'INVALID_TOPIC');
    await rejects(c.produce('small.one', [{ value: buf('ok') }, { value: Buffer.alloc(11) }]), 'MESSAGE_TOO_LARGE');
    await rejects(c.produce('small.one', [{ value: buf('ok'), headers: { n: 1 as unknown as string } }]), 'INVALID_ARGUMENT');
    expect(await c.read('small.one', 'earliest', 10)).toEqual([]);
    expect((await c.topics()).map(t => t.name)).not.toContain('small.one');
    // the rejected batch took no offsets
    expect((await c.produce('small.one', [{ value: Buffer.alloc(10) }]))[0].offset).toBe(0);
  });

  test('createTopic persists config: maxMessageBytes applies to other connections', async () => {
    const a = await bus.connection();
    await a.createTopic('configured', { maxMessageBytes: 5 });
    const b = await bus.connection();
    await rejects(b.produce('configured', [{ value: Buffer.alloc(6) }]), 'MESSAGE_TOO_LARGE');
    await rejects(a.createTopic('configured', { maxMessageBytes: -1 }), 'INVALID_OPTION');
    await b.createTopic('configured', { maxMessageBytes: 5 }); // same config: a no-op
    await rejects(b.createTopic('configured', { maxMessageBytes: 6 }), 'INVALID_ARGUMENT');
    await a.produce('used', [{ value: buf('x') }]);
    await rejects(a.createTopic('used', { durable: false }), 'INVALID_ARGUMENT');
    const info = (await b.topics()).find(t => t.name === 'configured');
    expect(info).toEqual({ name: 'configured', durable: true, earliestOffset: 0, nextOffset: 0, bytes: 0 });
  });

  test("a connection's `topics` option applies to other connections on the prefix, as on one shared broker", async () => {
    await bus.connection({ topics: { 'shared.*': { durable: false, maxMessageBytes: 8 } } });
    const other = await bus.connection();
    expect(await other.produce('shared.x', [{ value: buf('live') }])).toEqual([{ topic: 'shared.x', offset: undefined }]);
    await rejects(other.produce('shared.y', [{ value: Buffer.alloc(9) }]), 'MESSAGE_TOO_LARGE');
    // its own option wins for itself
    const own = await bus.connection({ topics: { 'shared.*': { durable: true } } });
    expect((await own.produce('shared.z', [{ value: buf('kept') }]))[0].offset).toBe(0);
  });

  test('topics() reports offsets and an estimate of bytes', async () => {
    const c = await bus.connection();
    await c.produce('sized', Array.from({ length: 10 }, () => ({ value: Buffer.alloc(100) })));
    const info = (await c.topics()).find(t => t.name === 'sized')!;
    expect(info.durable).toBe(true);
    expect(info.earliestOffset).toBe(0);
    expect(info.nextOffset).toBe(10);
    expect(info.bytes).toBeGreaterThanOrEqual(1000);
    expect(info.bytes).toBeLessThan(1200);
  });

  test('retention by age trims old messages on the next produce; offsets keep going', async () => {
    const c = await bus.connection({ topics: { aging: { retention: { maxAgeMs: 30 } } } });
    await c.produce('aging', [{ value: buf('old0') }, { value: buf('old1') }]);
    await sleep(80);
    await c.produce('aging', [{ value: buf('new') }]);
    const left = await c.read('aging', 'earliest', 10);
    expect(left.map(m => [m.offset, text(m)])).toEqual([[2, 'new']]);
    const info = (await c.topics()).find(t => t.name === 'aging')!;
    expect([info.earliestOffset, info.nextOffset]).toEqual([2, 3]);
  });

  test('retention by size keeps the newest messages, about maxBytes of them', async () => {
    const c = await bus.connection({ topics: { capped: { retention: { maxBytes: 20_000 } } } });
    for (let i = 0; i < 20; i++) await c.produce('capped', Array.from({ length: 50 }, () => ({ value: Buffer.alloc(100) })));
    const info = (await c.topics()).find(t => t.name === 'capped')!;
    expect(info.nextOffset).toBe(1000);
    expect(info.earliestOffset).toBeGreaterThan(500); // ~135 entries fit; MAXLEN ~ keeps a few more
    const newest = await c.read('capped', 999, 1);
    expect(newest.map(m => m.offset)).toEqual([999]);
  });

  test('operations before connect or after close fail with CLOSED; a dead url fails with CONNECTION_LOST', async () => {
    const c = new RedisConnection(resolveOptions({ url: 'redis://127.0.0.1:6379', prefix }));
    await rejects(c.produce('x', [{ value: buf('x') }]), 'CLOSED');
    await c.connect();
    await c.close();
    expect(c.status).toBe('disconnected');
    await rejects(c.produce('x', [{ value: buf('x') }]), 'CLOSED');
    await rejects(c.connect(), 'CLOSED');

    const dead = new RedisConnection(resolveOptions({ url: 'redis://127.0.0.1:1', prefix }));
    await rejects(dead.connect(), 'CONNECTION_LOST');
    await dead.close();
  });

  test("without the 'ioredis' package: a clear error naming it", async () => {
    const e = await importIoredis('ioredis-is-not-installed-here').catch(err => err);
    expect(isLogBusError(e, 'INVALID_OPTION')).toBe(true);
    expect((e as Error).message).toContain("'ioredis'");
    expect((e as Error).message).toContain('npm install ioredis');
    expect(typeof (await importIoredis('ioredis')).Redis).toBe('function');
  });

  test('status is reported to listeners', async () => {
    const c = new RedisConnection(resolveOptions({ url: 'redis://127.0.0.1:6379', prefix }));
    const seen: string[] = [];
    c.onStatus(s => seen.push(s));
    await c.connect();
    expect(c.status).toBe('connected');
    await c.close();
    expect(seen).toEqual(['connected', 'disconnected']);
  });
});
