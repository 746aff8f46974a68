import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker/broker.js';
import type { Delivery } from '../../lib/connection/types.js';
import { MemoryLogger, spec, until } from '../broker/helpers.js';

const root = mkdtempSync(join(tmpdir(), 'logbus-consumers-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, String(n++));

async function open(dataDir: string, topics = {}) {
  const logger = new MemoryLogger();
  const broker = await Broker.open({ dataDir, fsync: 'never', retentionCheckMs: 0, logger, topics });
  return { broker, c: broker.connect(), logger };
}

describe('poison messages with concurrency > 1', () => {
  it('each poison message reaches the dead-letter topic after exactly maxDeliver attempts; the rest are acked once', async () => {
    const { broker, c } = await open(freshDir());
    const poison = new Set([3, 7, 8, 15, 22]);
    const attempts = new Map<number, number[]>();
    const acked = new Map<number, number>();
    const maxDeliver = 4;
    const consumer = await c.consume(spec('work', 'g', { concurrency: 4, maxDeliver, backoffMs: [0, 1, 2], deadLetter: 'work.dlq' }), d => {
      const i = Number(d.value.toString());
      attempts.set(i, [...(attempts.get(i) ?? []), d.deliveryCount]);
      // Settle asynchronously, so several deliveries are in flight at once.
      setImmediate(() => {
        if (poison.has(i)) consumer.nack(d, `poison ${i}`);
        else {
          acked.set(i, (acked.get(i) ?? 0) + 1);
          consumer.ack(d);
        }
      });
    });
    // Keys: poison 7 and 8 share a key with healthy messages, which must wait for them.
    await c.produce('work', Array.from({ length: 30 }, (_, i) => ({ value: Buffer.from(String(i)), key: `k${i % 5}` })));
    const dlq: Delivery[] = [];
    const dlqConsumer = await c.consume(spec('work.dlq', 'dlq-reader'), d => {
      dlq.push(d);
      dlqConsumer.ack(d);
    });
    await until(() => dlq.length === poison.size && acked.size === 30 - poison.size, 'dead letters and acks');
    for (const p of poison) expect([p, attempts.get(p)]).toEqual([p, [1, 2, 3, 4]]);
    for (let i = 0; i < 30; i++) if (!poison.has(i)) expect([i, attempts.get(i), acked.get(i)]).toEqual([i, [1], 1]);
    expect(dlq.map(d => Number(d.value.toString())).sort((a, b) => a - b)).toEqual([...poison].sort((a, b) => a - b));
    for (const d of dlq) {
      expect(d.headers['x-logbus-deliveries']).toBe(String(maxDeliver));
      expect(d.headers['x-logbus-topic']).toBe('work');
      expect(d.headers['x-logbus-error']).toBe(`poison ${d.value.toString()}`);
      expect(d.key).toBe(`k${Number(d.value.toString()) % 5}`);
    }
    expect((await c.stats()).deadLettered).toBe(poison.size);
    const [g] = await c.groups('work');
    expect(g).toMatchObject({ committedOffset: 30, inFlight: 0, lag: 0 });
    await broker.close();
  });
});

describe('restarts', () => {
  it('unacked messages are delivered again after a restart, their delivery counts carried on; acked ones are not (see RELIABILITY.md)', async () => {
    const dataDir = freshDir();
    let { broker, c } = await open(dataDir);
    await c.produce('r', Array.from({ length: 10 }, (_, i) => ({ value: Buffer.from(String(i)) })));
    const first: Delivery[] = [];
    const consumer = await c.consume(spec('r', 'g', { concurrency: 10 }), d => {
      first.push(d);
      // Acks the even ones; the odd ones are in flight when the broker stops.
      if (Number(d.value.toString()) % 2 === 0) consumer.ack(d);
    });
    await until(() => first.length === 10, 'first deliveries');
    await broker.close();
    ({ broker, c } = await open(dataDir));
    const again: Delivery[] = [];
    const c2 = await c.consume(spec('r', 'g', { concurrency: 10 }), d => {
      again.push(d);
      c2.ack(d);
    });
    await until(() => again.some(d => d.value.toString() === '9'), 'redeliveries');
    const values = again.map(d => Number(d.value.toString()));
    // At-least-once: every unacked one comes back. The committed position is the first
    // unacked offset (1), so acked 2, 4, 6, 8 behind it come back too: the documented window.
    for (const odd of [1, 3, 5, 7, 9]) expect(values).toContain(odd);
    expect(values).not.toContain(0);
    expect(Math.min(...values)).toBe(1);
    // Delivery counts are persisted: each of these was delivered once before, so this is the second delivery.
    expect(again.map(d => d.deliveryCount)).toEqual(again.map(() => 2));
    await broker.close();
  });
});

describe('clock steps (Date.now jumps; timers use performance.now)', () => {
  it('a wall clock stepping back then forward 10 days redelivers nothing early, keeps offset order, expires nothing not yet due', async () => {
    const realNow = Date.now;
    const dataDir = freshDir();
    const { broker, c } = await open(dataDir, { clock: { segmentBytes: 4096, retention: { maxAgeMs: '1d' } } });
    const name = (d: { value: Buffer }) => d.value.toString().split('|')[0];
    const got: Delivery[] = [];
    const held: Delivery[] = [];
    const consumer = await c.consume(spec('clock', 'g', { concurrency: 3, ackWaitMs: 20_000 }), d => {
      got.push(d);
      // The first message is held unacked across the clock jumps.
      if (name(d) === 'm0') held.push(d);
      else consumer.ack(d);
    });
    const publish = (from: number, count: number) =>
      c.produce('clock', Array.from({ length: count }, (_, i) => ({ value: Buffer.from(`m${from + i}|${'x'.repeat(250)}`) })));
    try {
      await publish(0, 20);
      let skew = -2 * 24 * 3600_000;
      Date.now = () => realNow() + skew;
      await publish(20, 20);
      await broker.enforceRetention();
      skew = 10 * 24 * 3600_000;
      await publish(40, 20);
      // Activity while the clock is 10 days ahead: new messages flow, the held one stays held.
      await until(() => got.length === 60, 'all first deliveries');
      skew = 0;
      await broker.enforceRetention();
    } finally {
      Date.now = realNow;
    }
    expect(got.map(name)).toEqual(Array.from({ length: 60 }, (_, i) => `m${i}`));
    expect(got.every(d => d.deliveryCount === 1)).toBe(true);
    expect((await c.stats()).redelivered).toBe(0);
    consumer.ack(held[0]);
    // Retention runs on append time: nothing was old enough, whatever the wall clock said meanwhile.
    const all = await c.read('clock', 'earliest', 100);
    expect(all.map(r => r.offset)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    // Several segments, the stepped-back ones among them, so retention had something to consider.
    expect((await c.topics()).find(t => t.name === 'clock')!.bytes).toBeGreaterThan(3 * 4096);
    await broker.close();
  });
});
