import { afterEach, describe, expect, it } from '@jest/globals';
import type { Broker } from '../../lib/broker/broker.js';
import type { Delivery } from '../../lib/connection/types.js';
import { buf, codeOf, MemoryLogger, openBroker, text } from './helpers.js';

let broker: Broker;
let logger: MemoryLogger;
afterEach(async () => {
  await broker?.close();
});

async function setup(opts: Parameters<typeof openBroker>[0] = {}) {
  ({ broker, logger } = await openBroker(opts));
  return { a: broker.connect(), b: broker.connect(), pub: broker.connect() };
}

describe('push fan-out', () => {
  it('delivers every message to every subscriber, from every session, with the produced offset', async () => {
    const { a, b, pub } = await setup();
    const got: Record<string, Delivery[]> = { a1: [], a2: [], b: [] };
    await a.subscribe({ pattern: 'orders' }, d => got.a1.push(d));
    await a.subscribe({ pattern: 'orders' }, d => got.a2.push(d));
    await b.subscribe({ pattern: 'orders' }, d => got.b.push(d));
    const res = await pub.produce('orders', [{ value: buf('x'), key: 'k', headers: { h: 'v' } }, { value: buf('y') }]);
    for (const list of Object.values(got)) {
      expect(list.map(text)).toEqual(['x', 'y']);
      expect(list.map(d => d.offset)).toEqual(res.map(r => r.offset));
      expect(list[0]).toMatchObject({ topic: 'orders', key: 'k', headers: { h: 'v' }, deliveryCount: 1, group: undefined });
      expect(list[1].headers).toEqual({});
      expect(typeof list[0].timestamp).toBe('number');
    }
    expect(res.map(r => r.offset)).toEqual([0, 1]);
    // deliveries are plain data: spreading or encoding one (wire, logs) keeps every field and nothing internal
    const fields = ['deliveryCount', 'group', 'headers', 'id', 'key', 'offset', 'timestamp', 'topic', 'value'];
    expect(Object.keys({ ...got.b[0] }).sort()).toEqual(fields);
    expect(() => JSON.stringify(got.b[0])).not.toThrow();
  });

  it('matches * as one segment and > as one or more trailing segments', async () => {
    const { a, pub } = await setup();
    const got: Record<string, string[]> = { star: [], tail: [], exact: [] };
    await a.subscribe({ pattern: 'orders.*' }, d => got.star.push(d.topic));
    await a.subscribe({ pattern: 'orders.>' }, d => got.tail.push(d.topic));
    await a.subscribe({ pattern: 'orders.eu.created' }, d => got.exact.push(d.topic));
    for (const t of ['orders', 'orders.eu', 'orders.eu.created', 'ordersx.eu', 'other.eu']) await pub.produce(t, [{ value: buf(t) }]);
    expect(got.star).toEqual(['orders.eu']);
    expect(got.tail).toEqual(['orders.eu', 'orders.eu.created']);
    expect(got.exact).toEqual(['orders.eu.created']);
  });

  it('gets only messages published after subscribing, and none after unsubscribe', async () => {
    const { a, pub } = await setup();
    await pub.produce('t', [{ value: buf('before') }]);
    const got: string[] = [];
    const sub = await a.subscribe({ pattern: 't' }, d => got.push(text(d)));
    await pub.produce('t', [{ value: buf('during') }]);
    await sub.unsubscribe();
    await pub.produce('t', [{ value: buf('after') }]);
    expect(got).toEqual(['during']);
  });

  it('queue groups: each message to one member, round robin, only live members', async () => {
    const { a, b, pub } = await setup();
    const got: Record<string, string[]> = { a: [], b: [], plain: [] };
    await a.subscribe({ pattern: 'jobs.*', queue: 'workers' }, d => got.a.push(text(d)));
    const subB = await b.subscribe({ pattern: 'jobs.*', queue: 'workers' }, d => got.b.push(text(d)));
    await b.subscribe({ pattern: 'jobs.*' }, d => got.plain.push(text(d)));
    for (let i = 0; i < 6; i++) await pub.produce('jobs.x', [{ value: buf(String(i)) }]);
    expect(got.a.length).toBe(3);
    expect(got.b.length).toBe(3);
    expect([...got.a, ...got.b].sort()).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(got.plain).toEqual(['0', '1', '2', '3', '4', '5']);
    await subB.unsubscribe();
    await pub.produce('jobs.x', [{ value: buf('6') }, { value: buf('7') }]);
    expect(got.a.slice(-2)).toEqual(['6', '7']);
    expect(got.b.length).toBe(3);
  });

  it('a closed session stops receiving, others go on', async () => {
    const { a, b, pub } = await setup();
    const got = { a: 0, b: 0 };
    await a.subscribe({ pattern: 't', queue: 'q' }, () => got.a++);
    await b.subscribe({ pattern: 't', queue: 'q' }, () => got.b++);
    await a.close();
    await pub.produce('t', [{ value: buf('1') }, { value: buf('2') }]);
    expect(got).toEqual({ a: 0, b: 2 });
    expect(await codeOf(a.subscribe({ pattern: 't' }, () => undefined))).toBe('CLOSED');
    expect(await codeOf(a.produce('t', [{ value: buf('x') }]))).toBe('CLOSED');
  });

  it('bounds a slow subscriber: drops past its buffer, counts per subscriber, warns, resumes after done()', async () => {
    const { a, pub } = await setup();
    const held: Delivery[] = [];
    const fast: string[] = [];
    const slow = await a.subscribe({ pattern: 't', bufferBytes: 1000 }, d => held.push(d));
    await a.subscribe({ pattern: 't' }, d => fast.push(text(d)));
    const payload = 'x'.repeat(200);
    for (let i = 0; i < 20; i++) await pub.produce('t', [{ value: buf(payload) }]);
    expect(fast.length).toBe(20); // the slow one never slows the others
    expect(held.length).toBeGreaterThan(0);
    expect(held.length).toBeLessThan(20);
    const stats = await pub.stats();
    const dropped = Object.entries(stats.dropped);
    expect(dropped.length).toBe(1);
    expect(dropped[0][0]).toContain('t@');
    expect(dropped[0][1]).toBe(20 - held.length);
    expect(logger.warnings.filter(w => w.includes('too slow')).length).toBe(1); // rate-limited
    const first = held.length;
    for (const d of held.splice(0)) slow.done(d);
    await pub.produce('t', [{ value: buf(payload) }]);
    expect(held.length).toBe(1);
    expect(first * (payload.length + 64)).toBeLessThanOrEqual(1000);
  });

  it('a subscriber that throws does not stop the others', async () => {
    const { a, pub } = await setup();
    const got: string[] = [];
    await a.subscribe({ pattern: 't' }, () => {
      throw new Error('boom');
    });
    await a.subscribe({ pattern: 't' }, d => got.push(text(d)));
    await pub.produce('t', [{ value: buf('1') }]);
    expect(got).toEqual(['1']);
    expect(logger.errors.some(e => e.includes('boom'))).toBe(true);
  });

  it('rejects bad patterns with INVALID_TOPIC', async () => {
    const { a } = await setup();
    for (const p of ['', 'a..b', 'a.>.b', 'a b', 'ä']) expect(await codeOf(a.subscribe({ pattern: p }, () => undefined))).toBe('INVALID_TOPIC');
  });
});

describe('non-durable topics', () => {
  it('fan out at once with offset undefined, store nothing, refuse consume with NOT_DURABLE', async () => {
    const { a, pub } = await setup({ topics: { 'live.>': { durable: false } } });
    const got: Delivery[] = [];
    await a.subscribe({ pattern: 'live.>' }, d => got.push(d));
    const res = await pub.produce('live.ticks', [{ value: buf('1') }, { value: buf('2') }]);
    expect(res).toEqual([
      { topic: 'live.ticks', offset: undefined },
      { topic: 'live.ticks', offset: undefined },
    ]);
    expect(got.map(d => d.offset)).toEqual([undefined, undefined]);
    expect(got.map(text)).toEqual(['1', '2']);
    const info = (await pub.topics()).find(t => t.name === 'live.ticks');
    expect(info).toEqual({ name: 'live.ticks', durable: false, earliestOffset: 0, nextOffset: 0, bytes: 0 });
    const err = await pub
      .consume({ topic: 'live.ticks', group: 'g', from: 'earliest', concurrency: 1, ackWaitMs: 1000, maxDeliver: 1, backoffMs: [], deadLetter: false }, () => undefined)
      .catch(e => e);
    expect(err.code).toBe('NOT_DURABLE');
    expect(err.message).toContain('live.ticks');
  });
});
