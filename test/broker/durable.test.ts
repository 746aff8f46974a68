import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Broker } from '../../lib/broker/broker.js';
import type { Consumer, Delivery } from '../../lib/connection/types.js';
import { buf, openBroker, produceMany, sleep, spec, text, until } from './helpers.js';

let dir: string;
const brokers: Broker[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logbus-broker-'));
});
afterEach(async () => {
  await Promise.all(brokers.splice(0).map(b => b.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(opts: Parameters<typeof openBroker>[0] = {}): Promise<Broker> {
  const { broker } = await openBroker({ dataDir: dir, fsync: 'always', ...opts });
  brokers.push(broker);
  return broker;
}

async function closeBroker(b: Broker): Promise<void> {
  brokers.splice(brokers.indexOf(b), 1);
  await b.close();
}

describe('durable topics on the file store', () => {
  it('a group resumes after a clean close/reopen without redelivering acked messages', async () => {
    let b = await open();
    let c = b.connect();
    await produceMany(c, 'orders', 10);
    const first: Delivery[] = [];
    const held: Delivery[] = [];
    const consumer: Consumer = await c.consume(spec('orders', 'billing', { concurrency: 3 }), d => {
      if (d.offset! < 6) {
        first.push(d);
        consumer.ack(d);
      } else held.push(d); // in flight at shutdown: not acked
    });
    await until(() => first.length === 6 && held.length === 3, 'first part');
    await closeBroker(b);

    b = await open();
    c = b.connect();
    expect((await c.groups('orders'))[0]).toMatchObject({ group: 'billing', committedOffset: 6, lag: 4 });
    const again: Delivery[] = [];
    const consumer2: Consumer = await c.consume(spec('orders', 'billing'), d => {
      again.push(d);
      consumer2.ack(d);
    });
    await until(() => again.length === 4, 'the rest');
    expect(again.map(d => d.offset)).toEqual([6, 7, 8, 9]);
    expect(again.map(text)).toEqual(['6', '7', '8', '9']);
  });

  it("a new 'latest' group keeps its start across a restart, and offsets continue", async () => {
    let b = await open();
    let c = b.connect();
    await produceMany(c, 't', 3);
    const consumer = await c.consume(spec('t', 'g', { from: 'latest' }), () => undefined);
    await consumer.close();
    await closeBroker(b);
    b = await open();
    c = b.connect();
    const res = await c.produce('t', [{ value: buf('after restart') }]);
    expect(res[0].offset).toBe(3);
    const got: Delivery[] = [];
    const c2: Consumer = await c.consume(spec('t', 'g', { from: 'earliest' }), d => {
      got.push(d);
      c2.ack(d);
    });
    await until(() => got.length === 1, 'one');
    await sleep(20);
    expect(got.map(d => [d.offset, text(d)])).toEqual([[3, 'after restart']]);
  });

  it("from { timestamp } and resetGroup to a time use the file store's time index", async () => {
    const b = await open({ fsync: 'never' });
    const c = b.connect();
    await produceMany(c, 't', 4);
    await sleep(5);
    const cut = Date.now();
    await sleep(5);
    await produceMany(c, 't', 2);
    const got: Delivery[] = [];
    const consumer: Consumer = await c.consume(spec('t', 'g', { from: { timestamp: cut } }), d => {
      got.push(d);
      consumer.ack(d);
    });
    await until(() => got.length === 2, 'two');
    expect(got.map(d => d.offset)).toEqual([4, 5]);
    await c.resetGroup('t', 'other', { timestamp: cut });
    expect((await c.groups('t')).find(g => g.group === 'other')).toMatchObject({ committedOffset: 4, lag: 2 });
  });

  it('createTopic configs survive a restart', async () => {
    let b = await open();
    await b.connect().createTopic('volatile', { durable: false });
    await b.connect().createTopic('kept', { maxMessageBytes: 100 });
    await closeBroker(b);
    b = await open();
    const c = b.connect();
    expect((await c.produce('volatile', [{ value: buf('x') }]))[0].offset).toBeUndefined();
    await expect(c.produce('kept', [{ value: Buffer.alloc(101) }])).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    const topics = await c.topics();
    expect(topics.map(t => [t.name, t.durable])).toEqual([
      ['kept', true],
      ['volatile', false],
    ]);
  });

  it('push deliveries of a durable topic carry the offset produce() returned', async () => {
    const b = await open();
    const c = b.connect();
    const got: Delivery[] = [];
    await c.subscribe({ pattern: 'x.>' }, d => got.push(d));
    const res = await c.produce('x.y', [{ value: buf('a') }, { value: buf('b') }]);
    expect(got.map(d => d.offset)).toEqual(res.map(r => r.offset));
    expect((await c.read('x.y', 'earliest', 10)).map(text)).toEqual(['a', 'b']);
  });

  it('retention on disk is visible through topics()', async () => {
    const b = await open({ topics: { ret: { segmentBytes: 4096, retention: { maxBytes: 8192 } } }, fsync: 'never' });
    const c = b.connect();
    for (let i = 0; i < 60; i++) await c.produce('ret', [{ value: Buffer.alloc(500, i) }]);
    const before = (await c.topics())[0];
    await b.enforceRetention();
    const after = (await c.topics())[0];
    expect(after.earliestOffset).toBeGreaterThan(0);
    expect(after.nextOffset).toBe(60);
    expect(after.bytes).toBeLessThan(before.bytes);
    expect((await c.read('ret', 'earliest', 1))[0].offset).toBe(after.earliestOffset);
  });
});
