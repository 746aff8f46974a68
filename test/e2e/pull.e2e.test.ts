import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Inject, type INestMicroservice } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { Consume, LogBusClient, LogBusContext, LogBusError } from '../../lib/index.js';
import { eventually, Gate, listenError, sleep, startApp, uniqueTopic } from './helpers.js';

const dataDir = ':memory:';
let client: LogBusClient;

beforeAll(async () => {
  client = new LogBusClient({ dataDir });
  await client.connect();
});
afterAll(async () => {
  await client.close();
});

async function produceN(topic: string, from: number, to: number, key?: (n: number) => string): Promise<void> {
  await client.produceBatch(
    topic,
    Array.from({ length: to - from }, (_, i) => ({ data: { n: from + i }, ...(key && { key: key(from + i) }) })),
  );
}

const lagOf = async (topic: string, group: string) => (await client.groups(topic)).find(g => g.group === group);

describe('pull: @Consume', () => {
  it('hands every message to a group once, in offset order, with the pull context', async () => {
    const topic = uniqueTopic('once');
    const seen: Array<{ n: number; offset?: number; group?: string; count: number; key?: string; headers: Record<string, string> }> = [];
    @Controller()
    class Billing {
      @Consume(topic, { group: 'billing' })
      bill(@Payload() d: { n: number }, @Ctx() ctx: LogBusContext) {
        seen.push({ n: d.n, offset: ctx.getOffset(), group: ctx.getGroup(), count: ctx.getDeliveryCount(), key: ctx.getKey(), headers: ctx.getHeaders() });
      }
    }
    const app = await startApp({ controllers: [Billing] }, { dataDir });
    try {
      await client.produce(topic, { n: 0 }, { key: 'c-1', headers: { h: 'v' } });
      await produceN(topic, 1, 20);
      await eventually('20 messages', () => seen.length >= 20);
      await eventually('lag 0', async () => (await lagOf(topic, 'billing'))?.lag === 0);
      expect(seen.map(s => s.n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      expect(seen.map(s => s.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      expect(seen[0]).toEqual({ n: 0, offset: 0, group: 'billing', count: 1, key: 'c-1', headers: { h: 'v' } });
      expect(await lagOf(topic, 'billing')).toMatchObject({ committedOffset: 20, lag: 0, inFlight: 0 });
    } finally {
      await app.close();
    }
  });

  it('two groups are independent: each sees every message; instances of one group share them', async () => {
    const topic = uniqueTopic('groups');
    const byGroup: Record<string, number[]> = { a: [], b: [] };
    const shared: Array<{ who: string; n: number }> = [];
    @Controller()
    class Two {
      @Consume(topic, { group: 'a' })
      a(@Payload() d: { n: number }) {
        byGroup.a.push(d.n);
      }
      @Consume(topic, { group: 'b', concurrency: 4 })
      b(@Payload() d: { n: number }) {
        byGroup.b.push(d.n);
      }
    }
    @Controller()
    class Member {
      constructor(@Inject('WHO') private readonly who: string) {}
      @Consume(topic, { group: 'shared', concurrency: 2 })
      async on(@Payload() d: { n: number }) {
        shared.push({ who: this.who, n: d.n });
        await sleep(1);
      }
    }
    const apps: INestMicroservice[] = [];
    try {
      apps.push(await startApp({ controllers: [Two, Member], providers: [{ provide: 'WHO', useValue: 'm1' }] }, { dataDir }));
      apps.push(await startApp({ controllers: [Member], providers: [{ provide: 'WHO', useValue: 'm2' }] }, { dataDir }));
      await produceN(topic, 0, 40);
      await eventually('all groups done', () => byGroup.a.length >= 40 && byGroup.b.length >= 40 && shared.length >= 40);
      await eventually('lags 0', async () => (await client.groups(topic)).every(g => g.lag === 0));
      const all = Array.from({ length: 40 }, (_, i) => i);
      expect(byGroup.a).toEqual(all);
      expect([...byGroup.b].sort((x, y) => x - y)).toEqual(all);
      expect(shared.map(s => s.n).sort((x, y) => x - y)).toEqual(all);
      expect(new Set(shared.map(s => s.who))).toEqual(new Set(['m1', 'm2']));
      expect((await client.groups(topic)).map(g => g.group).sort()).toEqual(['a', 'b', 'shared']);
    } finally {
      for (const app of apps) await app.close();
    }
  });

  it('keeps messages of one key in publish order and never two at once, across instances, with concurrency > 1', async () => {
    const topic = uniqueTopic('keys');
    const active = new Map<string, number>();
    const order = new Map<string, number[]>();
    let overlaps = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    @Controller()
    class Ordered {
      @Consume(topic, { group: 'ordered', concurrency: 4 })
      async on(@Payload() d: { n: number; k: string }) {
        if (active.get(d.k)) overlaps++;
        active.set(d.k, 1);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        order.set(d.k, [...(order.get(d.k) ?? []), d.n]);
        await sleep(1 + (d.n % 3));
        inFlight--;
        active.set(d.k, 0);
      }
    }
    const apps = [await startApp({ controllers: [Ordered] }, { dataDir }), await startApp({ controllers: [Ordered] }, { dataDir })];
    try {
      const keys = ['k0', 'k1', 'k2', 'k3'];
      await client.produceBatch(
        topic,
        Array.from({ length: 60 }, (_, n) => ({ data: { n, k: keys[n % 4] }, key: keys[n % 4] })),
      );
      await eventually('60 messages', () => [...order.values()].reduce((s, l) => s + l.length, 0) >= 60);
      expect(overlaps).toBe(0);
      for (const [i, k] of keys.entries()) {
        expect(order.get(k)).toEqual(Array.from({ length: 15 }, (_, j) => i + 4 * j));
      }
      // different keys did run in parallel
      expect(maxInFlight).toBeGreaterThan(1);
    } finally {
      for (const app of apps) await app.close();
    }
  });

  it('runs messages without a key in parallel, at most `concurrency` at once per instance', async () => {
    const topic = uniqueTopic('parallel');
    let inFlight = 0;
    let maxInFlight = 0;
    let done = 0;
    const gate = new Gate();
    @Controller()
    class Parallel {
      @Consume(topic, { group: 'p', concurrency: 3 })
      async on() {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await gate.opened;
        inFlight--;
        done++;
      }
    }
    const app = await startApp({ controllers: [Parallel] }, { dataDir });
    try {
      await produceN(topic, 0, 10);
      await eventually('3 in flight', () => inFlight === 3);
      await sleep(30);
      expect(inFlight).toBe(3);
      gate.open();
      await eventually('10 done', () => done === 10);
      expect(maxInFlight).toBe(3);
    } finally {
      await app.close();
    }
  });

  it('retries a failing message after each backoff, counting deliveries, then acks it', async () => {
    const topic = uniqueTopic('retry');
    const attempts: Array<{ count: number; at: number }> = [];
    @Controller()
    class Flaky {
      @Consume(topic, { group: 'flaky', backoffMs: [150, 300] })
      on(@Ctx() ctx: LogBusContext) {
        attempts.push({ count: ctx.getDeliveryCount(), at: Date.now() });
        if (ctx.getDeliveryCount() < 3) throw new Error('not yet');
      }
    }
    const app = await startApp({ controllers: [Flaky] }, { dataDir });
    try {
      await client.produce(topic, { n: 1 });
      await eventually('3 attempts', () => attempts.length >= 3);
      await eventually('acked', async () => (await lagOf(topic, 'flaky'))?.lag === 0);
      expect(attempts.map(a => a.count)).toEqual([1, 2, 3]);
      // never earlier than the backoff (timer resolution aside)
      expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(140);
      expect(attempts[2].at - attempts[1].at).toBeGreaterThanOrEqual(290);
      expect((await client.stats()).redelivered).toBeGreaterThanOrEqual(2);
    } finally {
      await app.close();
    }
  });

  it("dead-letters after maxDeliver failed attempts, with the handler's error in the headers, and acks the original", async () => {
    const topic = uniqueTopic('poison');
    const deliveries: Record<string, number[]> = { first: [], second: [] };
    const dead: Array<{ data: unknown; headers: Record<string, string>; topic: string }> = [];
    @Controller()
    class Poison {
      @Consume(topic, { group: 'billing', maxDeliver: 3, backoffMs: [10] })
      on(@Payload() d: { n: string }, @Ctx() ctx: LogBusContext) {
        deliveries[d.n].push(ctx.getDeliveryCount());
        throw new Error(`card declined for ${d.n}`);
      }
      @Consume(`${topic}.dlq`, { group: 'ops' })
      dlq(@Payload() d: unknown, @Ctx() ctx: LogBusContext) {
        dead.push({ data: d, headers: ctx.getHeaders(), topic: ctx.getTopic() });
      }
    }
    const app = await startApp({ controllers: [Poison] }, { dataDir });
    try {
      await client.produce(topic, { n: 'first' }, { headers: { trace: 'abc' } });
      const { offset } = await client.produce(topic, { n: 'second' });
      await eventually('dead letters', () => dead.length === 2);
      expect(deliveries).toEqual({ first: [1, 2, 3], second: [1, 2, 3] });
      const second = dead.find(x => (x.data as { n: string }).n === 'second');
      expect(second).toEqual({
        data: { n: 'second' },
        topic: `${topic}.dlq`,
        headers: expect.objectContaining({
          'x-logbus-topic': topic,
          'x-logbus-offset': String(offset),
          'x-logbus-deliveries': '3',
          'x-logbus-error': 'card declined for second',
        }),
      });
      // the publisher's own headers travel along
      expect(dead.find(x => (x.data as { n: string }).n === 'first')?.headers).toMatchObject({ trace: 'abc', 'x-logbus-offset': String(offset! - 1) });
      await eventually('original acked', async () => (await lagOf(topic, 'billing'))?.lag === 0);
      expect((await client.stats()).deadLettered).toBeGreaterThanOrEqual(2);
    } finally {
      await app.close();
    }
  });

  it('with deadLetter: false drops the message after the last attempt and stores no dead letter', async () => {
    const topic = uniqueTopic('drop');
    let attempts = 0;
    @Controller()
    class Drop {
      @Consume(topic, { group: 'g', maxDeliver: 2, backoffMs: [5], deadLetter: false })
      on() {
        attempts++;
        throw new Error('always');
      }
    }
    const app = await startApp({ controllers: [Drop] }, { dataDir });
    try {
      await client.produce(topic, {});
      await eventually('acked after the last attempt', async () => attempts === 2 && (await lagOf(topic, 'g'))?.lag === 0);
      expect((await client.topics()).some(t => t.name === `${topic}.dlq`)).toBe(false);
    } finally {
      await app.close();
    }
  });

  it("from: 'latest' starts a new group at the end; an existing group resumes where it was", async () => {
    const topic = uniqueTopic('latest');
    const seen: number[] = [];
    @Controller()
    class Late {
      @Consume(topic, { group: 'late', from: 'latest' })
      on(@Payload() d: { n: number }) {
        seen.push(d.n);
      }
    }
    await produceN(topic, 0, 3);
    let app = await startApp({ controllers: [Late] }, { dataDir });
    try {
      await produceN(topic, 3, 5);
      await eventually('2 messages', () => seen.length === 2);
    } finally {
      await app.close();
    }
    await produceN(topic, 5, 7);
    app = await startApp({ controllers: [Late] }, { dataDir });
    try {
      await eventually('4 messages', () => seen.length === 4);
      await sleep(20);
      expect(seen).toEqual([3, 4, 5, 6]);
    } finally {
      await app.close();
    }
  });

  it('a restarted app resumes after the last acked message; resetGroup starts over on purpose', async () => {
    const topic = uniqueTopic('resume');
    const seen: number[] = [];
    @Controller()
    class Resume {
      @Consume(topic)
      on(@Payload() d: { n: number }) {
        seen.push(d.n);
      }
    }
    const options = { dataDir, group: 'resumers' };
    await produceN(topic, 0, 5);
    let app = await startApp({ controllers: [Resume] }, options);
    await eventually('5 messages', () => seen.length === 5);
    await app.close();

    await produceN(topic, 5, 8);
    app = await startApp({ controllers: [Resume] }, options);
    await eventually('8 messages', () => seen.length === 8);
    await app.close();
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);

    await client.resetGroup(topic, 'resumers', { offset: 6 });
    expect(await lagOf(topic, 'resumers')).toMatchObject({ committedOffset: 6, lag: 2 });
    app = await startApp({ controllers: [Resume] }, options);
    await eventually('2 again', () => seen.length === 10);
    await app.close();
    await client.resetGroup(topic, 'resumers', 'earliest');
    app = await startApp({ controllers: [Resume] }, options);
    await eventually('all again', () => seen.length === 18);
    await app.close();
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('from: { timestamp } starts a new group at the first message published at or after it', async () => {
    const topic = uniqueTopic('from-ts');
    await produceN(topic, 0, 3);
    await sleep(20);
    const since = Date.now();
    await sleep(5);
    await produceN(topic, 3, 5);
    const seen: number[] = [];
    @Controller()
    class Since {
      @Consume(topic, { group: 'since', from: { timestamp: since } })
      on(@Payload() d: { n: number }) {
        seen.push(d.n);
      }
    }
    const app = await startApp({ controllers: [Since] }, { dataDir });
    try {
      await eventually('2 messages', () => seen.length === 2);
      await sleep(20);
      expect(seen).toEqual([3, 4]);
    } finally {
      await app.close();
    }
  });

  it('a message unacked after ackWaitMs is delivered again', async () => {
    const topic = uniqueTopic('ackwait');
    const counts: number[] = [];
    const hold = new Gate();
    @Controller()
    class Hung {
      @Consume(topic, { group: 'hung', ackWaitMs: 150, concurrency: 2 })
      async on(@Ctx() ctx: LogBusContext) {
        counts.push(ctx.getDeliveryCount());
        if (ctx.getDeliveryCount() === 1) await hold.opened;
      }
    }
    const app = await startApp({ controllers: [Hung] }, { dataDir });
    try {
      await client.produce(topic, {});
      await eventually('redelivered', () => counts.length === 2);
      expect(counts).toEqual([1, 2]);
    } finally {
      hold.open();
      await app.close();
    }
  });

  it("an instance that goes away hands its unacked messages to another member at once, long before ackWaitMs", async () => {
    const topic = uniqueTopic('handover');
    const got: Array<{ who: string; count: number }> = [];
    const hold = new Gate();
    @Controller()
    class Member {
      constructor(@Inject('WHO') private readonly who: string) {}
      @Consume(topic, { group: 'pair', ackWaitMs: 60_000 })
      async on(@Ctx() ctx: LogBusContext) {
        got.push({ who: this.who, count: ctx.getDeliveryCount() });
        if (this.who === 'first') await hold.opened;
      }
    }
    const first = await startApp({ controllers: [Member], providers: [{ provide: 'WHO', useValue: 'first' }] }, { dataDir, shutdownTimeoutMs: 50 });
    await client.produce(topic, {});
    await eventually('first has it', () => got.length === 1);
    const second = await startApp({ controllers: [Member], providers: [{ provide: 'WHO', useValue: 'second' }] }, { dataDir });
    try {
      await first.close();
      await eventually('second has it', () => got.length === 2, 5_000);
      expect(got).toEqual([
        { who: 'first', count: 1 },
        { who: 'second', count: 2 },
      ]);
    } finally {
      hold.open();
      await second.close();
    }
  });

  it('@Consume with neither its own group nor the server group fails listen() naming handler and topic', async () => {
    const topic = uniqueTopic('nogroup');
    @Controller()
    class Orphan {
      @Consume(topic)
      handle() {}
    }
    const e = await listenError({ controllers: [Orphan] }, { dataDir });
    expect(e).toBeInstanceOf(LogBusError);
    expect((e as LogBusError).code).toBe('INVALID_OPTION');
    expect((e as LogBusError).message).toContain('Orphan.handle');
    expect((e as LogBusError).message).toContain(topic);
  });
});
