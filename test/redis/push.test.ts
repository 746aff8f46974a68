import type { Redis } from 'ioredis';
import type { Delivery } from '../../lib/connection/types.js';
import { isLogBusError } from '../../lib/errors.js';
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

function collect() {
  const got: Delivery[] = [];
  return { got, on: (d: Delivery) => got.push(d) };
}

describe('Redis driver: push', () => {
  test('every subscriber gets every message, with offset, key, headers and time', async () => {
    const pub = await bus.connection();
    const s1 = await bus.connection();
    const s2 = await bus.connection();
    const a = collect();
    const b = collect();
    await s1.subscribe({ pattern: 'news' }, a.on);
    await s2.subscribe({ pattern: 'news' }, b.on);
    const r = await pub.produce('news', [{ value: buf('one'), key: 'k', headers: { x: 'y' } }, { value: buf('two') }]);
    await waitFor('both subscribers', () => a.got.length === 2 && b.got.length === 2);
    for (const got of [a.got, b.got]) {
      expect(got.map(text)).toEqual(['one', 'two']);
      expect(got.map(d => d.offset)).toEqual(r.map(x => x.offset));
      expect(got[0].key).toBe('k');
      expect(got[0].headers).toEqual({ x: 'y' });
      expect(got[1].headers).toEqual({});
      expect(got[0].topic).toBe('news');
      expect(got[0].deliveryCount).toBe(1);
      expect(got[0].group).toBeUndefined();
      expect(Math.abs(got[0].timestamp - Date.now())).toBeLessThan(60_000);
    }
  });

  test('wildcards: * is one segment, > one or more; Redis globs are filtered exactly', async () => {
    const pub = await bus.connection();
    const sub = await bus.connection();
    const star = collect();
    const tail = collect();
    const exact = collect();
    await sub.subscribe({ pattern: 'orders.*' }, star.on);
    await sub.subscribe({ pattern: 'orders.>' }, tail.on);
    await sub.subscribe({ pattern: 'orders.a' }, exact.on);
    for (const t of ['orders.a', 'orders.a.b', 'orders', 'ordersx.a', 'orders.b']) await pub.produce(t, [{ value: buf(t) }]);
    await pub.produce('done', [{ value: buf('x') }]);
    await waitFor('deliveries', () => star.got.length >= 2 && tail.got.length >= 3 && exact.got.length >= 1);
    await sleep(100); // nothing else may arrive
    expect(star.got.map(d => d.topic)).toEqual(['orders.a', 'orders.b']);
    expect(tail.got.map(d => d.topic)).toEqual(['orders.a', 'orders.a.b', 'orders.b']);
    expect(exact.got.map(d => d.topic)).toEqual(['orders.a']);
  });

  test('only messages published after subscribe; unsubscribe stops delivery', async () => {
    const pub = await bus.connection();
    const sub = await bus.connection();
    await pub.produce('late', [{ value: buf('before') }]);
    const c = collect();
    const s = await sub.subscribe({ pattern: 'late' }, c.on);
    await pub.produce('late', [{ value: buf('after') }]);
    await waitFor('after', () => c.got.length === 1);
    await s.unsubscribe();
    await pub.produce('late', [{ value: buf('gone') }]);
    const probe = collect();
    await sub.subscribe({ pattern: 'late' }, probe.on);
    await pub.produce('late', [{ value: buf('probe') }]);
    await waitFor('probe', () => probe.got.length === 1);
    expect(c.got.map(text)).toEqual(['after']);
  });

  test('a queue group shares messages: each goes to one member, both members get some', async () => {
    const pub = await bus.connection();
    const m1 = await bus.connection();
    const m2 = await bus.connection();
    const all = await bus.connection();
    const a = collect();
    const b = collect();
    const everyone = collect();
    await m1.subscribe({ pattern: 'jobs.*', queue: 'workers' }, a.on);
    await m2.subscribe({ pattern: 'jobs.*', queue: 'workers' }, b.on);
    await all.subscribe({ pattern: 'jobs.*' }, everyone.on);
    await sleep(200); // membership change announced on the bus
    const n = 40;
    await pub.produce('jobs.x', Array.from({ length: n }, (_, i) => ({ value: buf(String(i)) })));
    await waitFor('the plain subscriber', () => everyone.got.length === n);
    await waitFor('the queue group', () => a.got.length + b.got.length >= n);
    await sleep(100);
    const shared = [...a.got, ...b.got].map(text).sort((x, y) => Number(x) - Number(y));
    expect(shared).toEqual(Array.from({ length: n }, (_, i) => String(i)));
    expect(a.got.length).toBeGreaterThan(0);
    expect(b.got.length).toBeGreaterThan(0);
  });

  test('a queue member that leaves: the rest get everything', async () => {
    const pub = await bus.connection();
    const m1 = await bus.connection();
    const m2 = await bus.connection();
    const a = collect();
    const b = collect();
    await m1.subscribe({ pattern: 'tasks', queue: 'q' }, a.on);
    const sb = await m2.subscribe({ pattern: 'tasks', queue: 'q' }, b.on);
    await sb.unsubscribe();
    await sleep(200);
    await pub.produce('tasks', Array.from({ length: 10 }, (_, i) => ({ value: buf(String(i)) })));
    await waitFor('all to the remaining member', () => a.got.length === 10);
    expect(b.got).toEqual([]);
  });

  test('a slow subscriber past its buffer: messages dropped and counted, others unaffected; done() frees room', async () => {
    const pub = await bus.connection();
    const slowConn = await bus.connection();
    const slow = collect();
    const fast = collect();
    const sub = await slowConn.subscribe({ pattern: 'firehose', bufferBytes: 250 }, slow.on);
    await slowConn.subscribe({ pattern: 'firehose' }, d => {
      fast.on(d);
    });
    await pub.produce('firehose', Array.from({ length: 10 }, () => ({ value: Buffer.alloc(100) })));
    await waitFor('fast subscriber', () => fast.got.length === 10);
    expect(slow.got.length).toBe(2); // 2 × 100 bytes held, the third would pass 250
    const stats = await slowConn.stats();
    const dropped = Object.entries(stats.dropped).filter(([id]) => id.startsWith('firehose@'));
    expect(dropped).toHaveLength(1);
    expect(dropped[0][1]).toBe(8);
    expect(bus.warnings.some(w => w.includes('firehose@') && w.includes('too slow'))).toBe(true);
    for (const d of slow.got) sub.done(d);
    await pub.produce('firehose', [{ value: Buffer.alloc(100) }]);
    await waitFor('room again', () => slow.got.length === 3);
  });

  test('non-durable topic: pushed, nothing stored, no offset, consume fails with NOT_DURABLE', async () => {
    const pub = await bus.connection({ topics: { 'live.>': { durable: false } } });
    const sub = await bus.connection({ topics: { 'live.>': { durable: false } } });
    const c = collect();
    await sub.subscribe({ pattern: 'live.>' }, c.on);
    const r = await pub.produce('live.ticks', [{ value: buf('t1') }, { value: buf('t2') }]);
    expect(r.map(x => x.offset)).toEqual([undefined, undefined]);
    await waitFor('ticks', () => c.got.length === 2);
    expect(c.got.map(d => d.offset)).toEqual([undefined, undefined]);
    expect(c.got.map(text)).toEqual(['t1', 't2']);
    const notStored = await pub.read('live.ticks', 'earliest', 10).catch(err => err);
    expect(isLogBusError(notStored, 'NOT_DURABLE')).toBe(true);
    const e = await sub
      .consume(
        { topic: 'live.ticks', group: 'g', from: 'earliest', concurrency: 1, ackWaitMs: 1000, maxDeliver: 1, backoffMs: [], deadLetter: false },
        () => undefined,
      )
      .catch(err => err);
    expect(isLogBusError(e, 'NOT_DURABLE')).toBe(true);
    const info = (await pub.topics()).find(t => t.name === 'live.ticks')!;
    expect(info.durable).toBe(false);
    expect(info.bytes).toBe(0);
  });

  test('a big batch reaches subscribers whole and in order, with its offsets', async () => {
    const pub = await bus.connection();
    const sub = await bus.connection();
    const c = collect();
    await sub.subscribe({ pattern: 'bulk' }, c.on);
    // ~600 KiB: Redis carries it as several pub/sub messages
    const msgs = Array.from({ length: 600 }, (_, i) => ({ value: Buffer.alloc(1000, i % 251), key: `k${i}` }));
    const r = await pub.produce('bulk', msgs);
    await waitFor('the whole batch', () => c.got.length === 600);
    expect(c.got.map(d => d.offset)).toEqual(r.map(x => x.offset));
    expect(c.got.every((d, i) => d.key === `k${i}` && d.value.equals(msgs[i].value))).toBe(true);
  });

  test('a bad pattern fails with INVALID_TOPIC', async () => {
    const sub = await bus.connection();
    const e = await sub.subscribe({ pattern: 'a.>.b' }, () => undefined).catch(err => err);
    expect(isLogBusError(e, 'INVALID_TOPIC')).toBe(true);
  });
});
