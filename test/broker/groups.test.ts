import { afterEach, describe, expect, it } from '@jest/globals';
import type { Broker } from '../../lib/broker/broker.js';
import type { Consumer, Delivery } from '../../lib/connection/types.js';
import { buf, codeOf, MemoryLogger, openBroker, produceMany, sleep, spec, text, until } from './helpers.js';

let broker: Broker;
let logger: MemoryLogger;
afterEach(async () => {
  await broker?.close();
});

async function setup(opts: Parameters<typeof openBroker>[0] = {}) {
  ({ broker, logger } = await openBroker(opts));
  return { a: broker.connect(), b: broker.connect(), pub: broker.connect() };
}

/** A consumer that acks at once and records what it got. */
async function acking(c: ReturnType<Broker['connect']>, s: Parameters<typeof spec>, out: Delivery[]): Promise<Consumer> {
  const consumer: Consumer = await c.consume(spec(...s), d => {
    out.push(d);
    consumer.ack(d);
  });
  return consumer;
}

describe('consumer groups', () => {
  it('delivers every message once per group, in offset order, sharing between members', async () => {
    const { a, b, pub } = await setup();
    const got: Delivery[] = [];
    const byMember = { a: 0, b: 0 };
    const ca = await a.consume(spec('orders', 'billing'), d => {
      got.push(d);
      byMember.a++;
      setTimeout(() => ca.ack(d), 1);
    });
    const cb = await b.consume(spec('orders', 'billing'), d => {
      got.push(d);
      byMember.b++;
      setTimeout(() => cb.ack(d), 1);
    });
    await produceMany(pub, 'orders', 50);
    await until(() => got.length >= 50, '50 deliveries');
    await sleep(20);
    expect(got.length).toBe(50);
    expect(got.map(d => d.offset).sort((x, y) => x! - y!)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(got.every(d => d.deliveryCount === 1 && d.group === 'billing' && d.topic === 'orders')).toBe(true);
    expect(Object.keys({ ...got[0] }).sort()).toEqual(['deliveryCount', 'group', 'headers', 'id', 'key', 'offset', 'timestamp', 'topic', 'value']);
    expect(byMember.a).toBeGreaterThan(0);
    expect(byMember.b).toBeGreaterThan(0);
    const [g] = await pub.groups('orders');
    expect(g).toEqual({ group: 'billing', committedOffset: 50, lag: 0, inFlight: 0 });
  });

  it('a single member with concurrency 1 sees offsets strictly increasing', async () => {
    const { a, pub } = await setup();
    const got: Delivery[] = [];
    await acking(a, ['t', 'g'], got);
    await produceMany(pub, 't', 30);
    await until(() => got.length === 30, '30 deliveries');
    const offsets = got.map(d => d.offset!);
    expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
    expect(new Set(offsets).size).toBe(30);
  });

  it('two groups are independent; each sees every message', async () => {
    const { a, b, pub } = await setup();
    const g1: Delivery[] = [];
    const g2: Delivery[] = [];
    await acking(a, ['t', 'one'], g1);
    await produceMany(pub, 't', 10);
    await acking(b, ['t', 'two'], g2);
    await until(() => g1.length === 10 && g2.length === 10, 'both groups');
    expect(g1.map(text)).toEqual(g2.map(text));
    const groups = await pub.groups('t');
    expect(groups.map(g => g.group)).toEqual(['one', 'two']);
  });

  it('same key: never two at once and in publish order across members, with concurrency > 1', async () => {
    const { a, b, pub } = await setup();
    const running = new Map<string, number>();
    const log: { key: string; i: number }[] = [];
    const overlaps: string[] = [];
    let done = 0;
    let unkeyedParallel = 0;
    let unkeyedRunning = 0;
    const handler = (c: () => Consumer) => (d: Delivery) => {
      const key = d.key;
      if (key === undefined) {
        unkeyedRunning++;
        unkeyedParallel = Math.max(unkeyedParallel, unkeyedRunning);
      } else {
        if (running.get(key)) overlaps.push(`${key}@${d.offset}`);
        running.set(key, 1);
        log.push({ key, i: Number(text(d).split(':')[1]) });
      }
      setTimeout(() => {
        if (key === undefined) unkeyedRunning--;
        else running.set(key, 0);
        done++;
        c().ack(d);
      }, 1 + (d.offset! % 3));
    };
    let ca: Consumer;
    let cb: Consumer;
    ca = await a.consume(spec('k', 'g', { concurrency: 4 }), handler(() => ca));
    cb = await b.consume(spec('k', 'g', { concurrency: 4 }), handler(() => cb));
    const msgs = [];
    for (let i = 0; i < 120; i++) {
      const key = i % 4 === 3 ? undefined : `key${i % 3}`;
      msgs.push({ value: buf(`${key}:${i}`), key });
    }
    await pub.produce('k', msgs);
    await until(() => done === 120, 'all handled');
    expect(overlaps).toEqual([]);
    for (const k of ['key0', 'key1', 'key2']) {
      const seq = log.filter(l => l.key === k).map(l => l.i);
      expect(seq).toEqual([...seq].sort((x, y) => x - y));
      expect(seq.length).toBe(30);
    }
    expect(unkeyedParallel).toBeGreaterThan(1);
  });

  it('retries a failed message after the given backoff with rising delivery counts, then dead-letters after exactly maxDeliver', async () => {
    const { a, b, pub } = await setup();
    const attempts: { at: number; count: number }[] = [];
    const c = await a.consume(spec('pay', 'g', { maxDeliver: 3, backoffMs: [30, 60] }), d => {
      attempts.push({ at: Date.now(), count: d.deliveryCount });
      c.nack(d, `failure ${d.deliveryCount}`);
    });
    const dlq: Delivery[] = [];
    await b.subscribe({ pattern: 'pay.dlq' }, d => dlq.push(d));
    await pub.produce('pay', [{ value: buf('money'), key: 'acct', headers: { trace: 't1' } }]);
    await until(() => dlq.length === 1, 'a dead letter');
    expect(attempts.map(x => x.count)).toEqual([1, 2, 3]);
    // the backoff is a minimum wait (timing upper bounds are not asserted)
    expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(25);
    expect(attempts[2].at - attempts[1].at).toBeGreaterThanOrEqual(55);
    const dl = dlq[0];
    expect(text(dl)).toBe('money');
    expect(dl.key).toBe('acct');
    expect(dl.headers).toEqual({
      trace: 't1',
      'x-logbus-topic': 'pay',
      'x-logbus-offset': '0',
      'x-logbus-error': 'failure 3',
      'x-logbus-deliveries': '3',
    });
    const stored = await pub.read('pay.dlq', 'earliest', 10);
    expect(stored.map(r => r.headers['x-logbus-deliveries'])).toEqual(['3']);
    await sleep(80);
    expect(attempts.length).toBe(3); // acked on its own topic: no 4th attempt
    const [g] = await pub.groups('pay');
    expect(g.committedOffset).toBe(1);
    const stats = await pub.stats();
    expect(stats.deadLettered).toBe(1);
    expect(stats.redelivered).toBe(2);
  });

  it('deadLetter false drops after the last attempt and logs it', async () => {
    const { a, pub } = await setup();
    let attempts = 0;
    const c = await a.consume(spec('x', 'g', { maxDeliver: 2, backoffMs: [0], deadLetter: false }), d => {
      attempts++;
      c.nack(d, 'nope');
    });
    await pub.produce('x', [{ value: buf('1') }]);
    await until(() => logger.warnings.some(w => w.includes('dropping')), 'a drop warning');
    expect(attempts).toBe(2);
    expect((await pub.topics()).map(t => t.name)).toEqual(['x']);
    expect((await pub.groups('x'))[0].committedOffset).toBe(1);
  });

  it('a dead letter the dead-letter topic refuses is logged and skipped, not retried forever', async () => {
    const { a, pub } = await setup({ topics: { 'strict.dlq': { maxMessageBytes: 1 } } });
    let attempts = 0;
    const c = await a.consume(spec('strict', 'g', { maxDeliver: 1 }), d => {
      attempts++;
      c.nack(d, 'bad');
    });
    await pub.produce('strict', [{ value: buf('too big for the dlq') }]);
    await until(() => logger.errors.some(e => e.includes("could not dead-letter 'strict' offset 0")), 'the error');
    expect(logger.errors.find(e => e.includes('could not dead-letter'))).toContain('MESSAGE_TOO_LARGE');
    expect((await pub.groups('strict'))[0].committedOffset).toBe(1);
    expect(attempts).toBe(1);
    expect(await pub.read('strict.dlq', 'earliest', 10)).toEqual([]);
  });

  it('a message not acked within ackWaitMs is delivered again', async () => {
    const { a, pub } = await setup();
    const got: Delivery[] = [];
    const c = await a.consume(spec('t', 'g', { ackWaitMs: 40 }), d => {
      got.push(d);
      if (d.deliveryCount === 2) c.ack(d);
    });
    await pub.produce('t', [{ value: buf('slow') }]);
    await until(() => got.length === 2, 'a redelivery');
    expect(got.map(d => [d.offset, d.deliveryCount])).toEqual([
      [0, 1],
      [0, 2],
    ]);
    c.ack(got[0]); // a late ack of the expired delivery changes nothing
    expect((await pub.groups('t'))[0]).toMatchObject({ committedOffset: 1, inFlight: 0 });
  });

  it('a member that closes hands its unacked messages to another member at once', async () => {
    const { a, b, pub } = await setup();
    const gotA: Delivery[] = [];
    const gotB: Delivery[] = [];
    await a.consume(spec('t', 'g', { concurrency: 5 }), d => gotA.push(d)); // never acks
    await produceMany(pub, 't', 3);
    await until(() => gotA.length === 3, 'a holds 3');
    const cb = await b.consume(spec('t', 'g', { concurrency: 5 }), d => {
      gotB.push(d);
      cb.ack(d);
    });
    expect(gotB.length).toBe(0); // a still has them in flight
    expect((await pub.groups('t'))[0].inFlight).toBe(3);
    await a.close(); // the whole session goes: its consumer too
    await until(() => gotB.length === 3, 'b gets them');
    expect(gotB.map(d => [d.offset, d.deliveryCount])).toEqual([
      [0, 2],
      [1, 2],
      [2, 2],
    ]);
    expect((await pub.groups('t'))[0]).toMatchObject({ committedOffset: 3, inFlight: 0 });
  });

  it('acks out of order: the committed position is the first offset not acked', async () => {
    const { a, pub } = await setup();
    const held: Delivery[] = [];
    const c = await a.consume(spec('t', 'g', { concurrency: 10 }), d => held.push(d));
    await produceMany(pub, 't', 5);
    await until(() => held.length === 5, '5 in flight');
    c.ack(held[1]);
    c.ack(held[2]);
    c.ack(held[4]);
    expect((await pub.groups('t'))[0]).toEqual({ group: 'g', committedOffset: 0, lag: 5, inFlight: 2 });
    c.ack(held[0]);
    expect((await pub.groups('t'))[0]).toMatchObject({ committedOffset: 3, lag: 2 });
    c.ack(held[3]);
    expect((await pub.groups('t'))[0]).toMatchObject({ committedOffset: 5, lag: 0, inFlight: 0 });
  });

  it("from 'latest', { offset } and { timestamp } place a new group; an existing group resumes", async () => {
    const { a, pub } = await setup();
    await produceMany(pub, 't', 5);
    await sleep(5);
    const cut = Date.now();
    await sleep(5);
    await produceMany(pub, 't', 3);
    const latest: Delivery[] = [];
    const byOffset: Delivery[] = [];
    const byTime: Delivery[] = [];
    await acking(a, ['t', 'latest', { from: 'latest' }], latest);
    await acking(a, ['t', 'offset', { from: { offset: 6 } }], byOffset);
    await acking(a, ['t', 'time', { from: { timestamp: cut } }], byTime);
    await pub.produce('t', [{ value: buf('new') }]);
    await until(() => latest.length === 1 && byOffset.length === 3 && byTime.length === 4, 'deliveries');
    expect(latest.map(d => d.offset)).toEqual([8]);
    expect(byOffset.map(d => d.offset)).toEqual([6, 7, 8]);
    expect(byTime.map(d => d.offset)).toEqual([5, 6, 7, 8]);
    // an existing group ignores `from`
    const again: Delivery[] = [];
    await acking(a, ['t', 'latest', { from: 'earliest' }], again);
    await pub.produce('t', [{ value: buf('newer') }]);
    await until(() => latest.length + again.length === 2, 'one more');
    expect([...latest, ...again].map(d => d.offset)).toEqual([8, 9]);
  });

  it('resetGroup moves the cursor back (replay) and forward (skip)', async () => {
    const { a, pub } = await setup();
    const got: Delivery[] = [];
    await acking(a, ['t', 'g'], got);
    await produceMany(pub, 't', 4);
    await until(() => got.length === 4, 'first pass');
    await pub.resetGroup('t', 'g', { offset: 1 });
    await until(() => got.length === 7, 'replay');
    expect(got.slice(4).map(d => d.offset)).toEqual([1, 2, 3]);
    await pub.resetGroup('t', 'g', 'latest');
    expect((await pub.groups('t'))[0]).toMatchObject({ committedOffset: 4, lag: 0 });
    // a group with no members yet can be placed too
    await pub.resetGroup('t', 'idle', { offset: 2 });
    expect((await pub.groups('t')).find(g => g.group === 'idle')).toEqual({ group: 'idle', committedOffset: 2, lag: 2, inFlight: 0 });
    expect(await codeOf(pub.resetGroup('t', 'g', { offset: -1 } as never))).toBe('INVALID_ARGUMENT');
  });

  it('groups() reports lag of a group that falls behind', async () => {
    const { a, pub } = await setup();
    const held: Delivery[] = [];
    const c = await a.consume(spec('t', 'g', { concurrency: 2 }), d => held.push(d));
    await produceMany(pub, 't', 10);
    await until(() => held.length === 2, 'window full');
    expect((await pub.groups('t'))[0]).toEqual({ group: 'g', committedOffset: 0, lag: 10, inFlight: 2 });
    c.ack(held[0]);
    c.ack(held[1]);
    await until(() => held.length === 4, 'two more');
    expect((await pub.groups('t'))[0]).toEqual({ group: 'g', committedOffset: 2, lag: 8, inFlight: 2 });
    expect(await pub.groups('unknown')).toEqual([]);
  });

  it('pause() stops new deliveries while in-flight ones can still be acked', async () => {
    const { a, pub } = await setup();
    const got: Delivery[] = [];
    const c = await a.consume(spec('t', 'g', { concurrency: 2 }), d => got.push(d));
    await produceMany(pub, 't', 5);
    await until(() => got.length === 2, 'two');
    c.pause();
    c.ack(got[0]);
    c.ack(got[1]);
    await sleep(20);
    expect(got.length).toBe(2);
    expect((await pub.groups('t'))[0].committedOffset).toBe(2);
  });

  it('a failing keyed message holds back later messages of its key, not other keys', async () => {
    const { a, pub } = await setup();
    const order: string[] = [];
    const c = await a.consume(spec('t', 'g', { concurrency: 4, backoffMs: [30] }), d => {
      const v = text(d);
      order.push(`${v}#${d.deliveryCount}`);
      if (v === 'k1' && d.deliveryCount === 1) c.nack(d, 'first try fails');
      else c.ack(d);
    });
    await pub.produce('t', [
      { value: buf('k1'), key: 'k' },
      { value: buf('k2'), key: 'k' },
      { value: buf('other'), key: 'o' },
    ]);
    await until(() => order.length === 4, 'all processed');
    expect(order.indexOf('other#1')).toBeLessThan(order.indexOf('k1#2')); // another key is not blocked
    expect(order.indexOf('k1#2')).toBeLessThan(order.indexOf('k2#1')); // same key waits for the retry
    expect(order.filter(o => o.startsWith('k2'))).toEqual(['k2#1']);
  });

  it('ack timeouts count as failed attempts: dead-lettered after maxDeliver', async () => {
    const { a, b, pub } = await setup();
    const counts: number[] = [];
    await a.consume(spec('t', 'g', { ackWaitMs: 20, maxDeliver: 2 }), d => counts.push(d.deliveryCount)); // never acks
    const dlq: Delivery[] = [];
    await b.subscribe({ pattern: 't.dlq' }, d => dlq.push(d));
    await pub.produce('t', [{ value: buf('stuck') }]);
    await until(() => dlq.length === 1, 'dead letter');
    expect(counts).toEqual([1, 2]);
    expect(dlq[0].headers['x-logbus-error']).toContain('ackWaitMs');
    expect(dlq[0].headers['x-logbus-deliveries']).toBe('2');
  });

  it('consumer.close() resolves once the position is written to the store', async () => {
    const { a, pub } = await setup();
    let n = 0;
    const c: Consumer = await a.consume(spec('t', 'g'), d => {
      n++;
      c.ack(d);
    });
    await produceMany(pub, 't', 7);
    await until(() => n === 7, 'seven');
    await c.close();
    expect(await broker.store.loadGroupOffsets()).toEqual([expect.objectContaining({ topic: 't', group: 'g', offset: 7 })]);
  });

  it('one stuck message bounds how far the group reads ahead, and the group goes on once it is acked', async () => {
    const { a, pub } = await setup();
    const { MAX_SPAN } = await import('../../lib/broker/consumer-group.js');
    let stuck: Delivery | undefined;
    let delivered = 0;
    const c: Consumer = await a.consume(spec('t', 'g', { concurrency: 100 }), d => {
      delivered++;
      if (d.offset === 0) stuck = d;
      else c.ack(d);
    });
    const total = MAX_SPAN + 500;
    for (let i = 0; i < total; i += 1000) await produceMany(pub, 't', Math.min(1000, total - i));
    await until(() => delivered === MAX_SPAN, 'the window to fill');
    await sleep(30);
    expect(delivered).toBe(MAX_SPAN); // nothing past the window while offset 0 is unacked
    expect((await pub.groups('t'))[0]).toMatchObject({ committedOffset: 0, inFlight: 1 });
    c.ack(stuck!);
    await until(() => delivered === total, 'the rest');
    expect((await pub.groups('t'))[0]).toMatchObject({ committedOffset: total, lag: 0 });
  });

  it('checks consume options and refuses a closed connection', async () => {
    const { a } = await setup();
    expect(await codeOf(a.consume(spec('bad topic', 'g'), () => undefined))).toBe('INVALID_TOPIC');
    expect(await codeOf(a.consume(spec('t', ''), () => undefined))).toBe('INVALID_OPTION');
    expect(await codeOf(a.consume(spec('t', 'g', { concurrency: 0 }), () => undefined))).toBe('INVALID_OPTION');
    expect(await codeOf(a.consume(spec('t', 'g', { maxDeliver: 0 }), () => undefined))).toBe('INVALID_OPTION');
    expect(await codeOf(a.consume(spec('t', 'g', { deadLetter: 'a.*' }), () => undefined))).toBe('INVALID_OPTION');
    expect(await codeOf(a.consume(spec('t', 'g', { from: 'middle' as never }), () => undefined))).toBe('INVALID_OPTION');
    expect((await a.topics()).length).toBe(0); // nothing was created by the refused calls
    await a.close();
    expect(await codeOf(a.consume(spec('t', 'g'), () => undefined))).toBe('CLOSED');
  });
});

describe('wake-ups', () => {
  it('a message that becomes readable while the group is reading is not missed', async () => {
    const { MemoryStore } = await import('../../lib/store/memory-store.js');
    const { Broker } = await import('../../lib/broker/broker.js');
    const store = new MemoryStore();
    // A log whose appends become readable only when the test says (like a sync in progress),
    // and whose reads wait at a gate the test opens.
    let visible = 0;
    let makeVisible: () => void = () => undefined;
    let gate: Promise<void> = Promise.resolve();
    let openGate: () => void = () => undefined;
    let readsStarted = 0;
    const openTopic = store.openTopic.bind(store);
    store.openTopic = async (name, config) => {
      const log = await openTopic(name, config);
      const append = log.append.bind(log);
      const read = log.read.bind(log);
      log.append = (records, now) => {
        const res = append(records, now);
        const durable = new Promise<void>(r => {
          makeVisible = () => {
            visible = res.baseOffset + records.length;
            r();
          };
        });
        return { ...res, durable };
      };
      log.read = async (from, max, maxBytes) => {
        readsStarted++;
        const limit = visible; // what was readable when the read began
        await gate;
        return (await read(from, max, maxBytes)).filter(r => r.offset < limit);
      };
      return log;
    };
    const b = await Broker.open({ dataDir: ':memory:', store, logger: new MemoryLogger(), retentionCheckMs: 0 });
    try {
      const c = b.connect();
      await c.createTopic('t', {});
      const produced = c.produce('t', [{ value: buf('m') }]); // appended, not yet readable
      await sleep(1);
      gate = new Promise(r => (openGate = r));
      const got: Delivery[] = [];
      await c.consume(spec('t', 'g'), d => got.push(d));
      await until(() => readsStarted === 1, 'the group to start reading');
      makeVisible(); // becomes readable (and wakes the group) while the read is in progress
      await produced;
      openGate();
      await until(() => got.length === 1, 'the message');
      expect(got.map(text)).toEqual(['m']);
    } finally {
      openGate();
      await b.close();
    }
  });
});
