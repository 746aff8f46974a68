/**
 * The API.md contract, written once and run against every connection the url
 * can choose (embedded, logbus://, redis://). Each driver's test file builds a
 * ContractEnv and calls describeContract; jest runs the files in parallel.
 *
 * Everything goes through the public surface a user has: Nest apps built with
 * @nestjs/testing on LogBusServer, and LogBusClient. Where a driver documents a
 * difference (Redis: timestamps are Redis server time, queue-group membership
 * changes take a moment to reach every member), the env states it and the test
 * checks the documented behaviour instead of skipping.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Inject, type INestMicroservice, type Provider } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { delay as rxDelay, from, lastValueFrom, toArray } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusError, Subscribe, type LogBusOptions } from '../../lib/index.js';
import { codeOf, eventually, Gate, listenError, sleep, startApp, uniqueTopic } from '../e2e/helpers.js';

export interface ContractEnv {
  /** What every server and client of this driver is given (url, dataDir, prefix…). */
  options: LogBusOptions;
  /** The clock that stamps messages: the broker's (Redis: Redis server time, per its driver header). */
  brokerNow(): Promise<number>;
  /**
   * How long a push queue-group membership change takes to reach every member.
   * 0: listen() resolved means every member counts the new one (embedded, logbus://).
   * Redis documents that a join/leave is announced on pub/sub, and until every member
   * has seen it a message may reach two members or none.
   */
  queueMembershipSettleMs: number;
  /** Called once every app and client of the suite is closed: restart the broker, if the driver has one of its own. */
  restartBroker(): Promise<void>;
  teardown(): Promise<void>;
}

type Ctor = new (...args: never[]) => unknown;

/** One message as a handler saw it, with every context getter. */
interface Seen {
  by: string;
  data: unknown;
  topic: string;
  offset: number | undefined;
  timestamp: number;
  key: string | undefined;
  headers: Record<string, string>;
  deliveryCount: number;
  group: string | undefined;
}

const record = (by: string, data: unknown, ctx: LogBusContext): Seen => ({
  by,
  data,
  topic: ctx.getTopic(),
  offset: ctx.getOffset(),
  timestamp: ctx.getTimestamp(),
  key: ctx.getKey(),
  headers: ctx.getHeaders(),
  deliveryCount: ctx.getDeliveryCount(),
  group: ctx.getGroup(),
});

/** [first, end) */
const range = (first: number, end: number) => Array.from({ length: end - first }, (_, i) => first + i);
const byNumber = (x: number, y: number) => x - y;

export function describeContract(driver: string, makeEnv: () => Promise<ContractEnv>): void {
  describe(`API.md contract on ${driver}`, () => {
    let env: ContractEnv;
    let client: LogBusClient;
    const apps: INestMicroservice[] = [];

    const newClient = async (extra: LogBusOptions = {}) => {
      const c = new LogBusClient({ ...env.options, rpcTimeoutMs: 5000, ...extra });
      await c.connect();
      return c;
    };
    /** A listening app on this driver; closed after the test even if it fails. */
    const app = async (controllers: Ctor[], providers: Provider[] = [], extra: LogBusOptions = {}) => {
      const a = await startApp({ controllers, providers }, { ...env.options, ...extra });
      apps.push(a);
      return a;
    };
    const closeApp = async (a: INestMicroservice) => {
      apps.splice(apps.indexOf(a), 1);
      await a.close();
    };
    const who = (name: string): Provider => ({ provide: 'WHO', useValue: name });
    const produceN = (topic: string, first: number, end: number) =>
      client.produceBatch(topic, range(first, end).map(n => ({ data: { n } })));
    const groupOf = async (topic: string, group: string) => (await client.groups(topic)).find(g => g.group === group);

    beforeAll(async () => {
      env = await makeEnv();
      client = await newClient();
    });
    afterEach(async () => {
      for (const a of apps.splice(0)) await a.close();
    });
    afterAll(async () => {
      await client?.close();
      await env?.teardown();
    });

    describe('push', () => {
      it('fans every message out to every @Subscribe and @EventPattern handler, with the context of the publish', async () => {
        const topic = uniqueTopic('fanout');
        const seen: Seen[] = [];
        @Controller()
        class Handlers {
          @Subscribe(topic)
          a(@Payload() d: unknown, @Ctx() ctx: LogBusContext) {
            seen.push(record('a', d, ctx));
          }
          @Subscribe(topic)
          b(@Payload() d: unknown, @Ctx() ctx: LogBusContext) {
            seen.push(record('b', d, ctx));
          }
          @EventPattern<string>(topic)
          c(@Payload() d: object, @Ctx() ctx: LogBusContext) {
            seen.push(record('c', d, ctx));
          }
        }
        await app([Handlers]);
        const before = await env.brokerNow();
        const first = await client.produce(topic, { n: 1 }, { key: 'k1', headers: { trace: 't-1' } });
        const second = await lastValueFrom(client.emit(topic, { n: 2 }));
        const after = await env.brokerNow();
        await eventually('6 deliveries', () => seen.length === 6);
        expect(second.offset).toBe(first.offset! + 1);
        for (const by of ['a', 'b', 'c']) {
          const mine = seen.filter(s => s.by === by);
          expect(mine.map(s => s.data)).toEqual([{ n: 1 }, { n: 2 }]);
          expect(mine[0]).toMatchObject({ topic, offset: first.offset, key: 'k1', headers: { trace: 't-1' }, deliveryCount: 1, group: undefined });
          expect(mine[1]).toMatchObject({ topic, offset: second.offset, key: undefined, headers: {}, deliveryCount: 1, group: undefined });
          // set by the broker, on the broker's clock
          for (const s of mine) {
            expect(s.timestamp).toBeGreaterThanOrEqual(before);
            expect(s.timestamp).toBeLessThanOrEqual(after);
          }
        }
      });

      it("gives each handler a context of its own: changing getHeaders() changes nothing another handler sees; getArgs() lists the getters' values", async () => {
        const topic = uniqueTopic('ctxown');
        const seen: Array<{ by: string; headers: Record<string, string>; args: unknown[] }> = [];
        const look = (by: string, ctx: LogBusContext) => {
          const headers = ctx.getHeaders();
          seen.push({ by, headers: { ...headers }, args: [...ctx.getArgs()] });
          headers[`seen-by-${by}`] = 'yes'; // a handler may write to its own copy, with or without headers at publish
          expect(ctx.getHeaders()).toBe(headers);
          expect(ctx.getArgByIndex(4)).toBe(headers);
        };
        @Controller()
        class Handlers {
          @Subscribe(topic)
          a(@Payload() _d: unknown, @Ctx() ctx: LogBusContext) {
            look('a', ctx);
          }
          @EventPattern<string>(topic)
          b(@Payload() _d: object, @Ctx() ctx: LogBusContext) {
            look('b', ctx);
          }
        }
        await app([Handlers]);
        const first = await client.produce(topic, { n: 1 }, { key: 'k1', headers: { trace: 't-1' } });
        await client.produce(topic, { n: 2 });
        await eventually('4 deliveries', () => seen.length === 4);
        for (const by of ['a', 'b']) {
          const mine = seen.filter(s => s.by === by);
          expect(mine.map(s => s.headers)).toEqual([{ trace: 't-1' }, {}]);
          // args[4] is the handler's headers object (checked in look())
          const [topicArg, offset, timestamp, key, , deliveryCount, group] = mine[0].args;
          expect({ topicArg, offset, key, deliveryCount, group }).toEqual({ topicArg: topic, offset: first.offset, key: 'k1', deliveryCount: 1, group: undefined });
          expect(typeof timestamp).toBe('number');
        }
      });

      it('matches wildcards: * exactly one segment (orders.* never gets orders.a.b), > one or more trailing segments', async () => {
        const base = uniqueTopic('wild');
        const star: string[] = [];
        const tail: string[] = [];
        const exact: string[] = [];
        @Controller()
        class Handlers {
          @Subscribe(`${base}.*`)
          one(@Payload() _d: unknown, @Ctx() ctx: LogBusContext) {
            star.push(ctx.getTopic());
          }
          @EventPattern<string>(`${base}.>`)
          rest(@Payload() _d: object, @Ctx() ctx: LogBusContext) {
            tail.push(ctx.getTopic());
          }
          @Subscribe(`${base}.*.b`)
          middle(@Payload() _d: unknown, @Ctx() ctx: LogBusContext) {
            exact.push(ctx.getTopic());
          }
        }
        await app([Handlers]);
        for (const t of [`${base}.a`, `${base}.a.b`, base, `${base}x.a`, `${base}.a.c`, `${base}.b`]) await client.produce(t, {});
        // a last message every handler gets: once it is in, nothing else is on its way
        await client.produce(`${base}.z.b`, {});
        await eventually('deliveries', () => star.length === 2 && tail.length === 5 && exact.length === 2);
        await sleep(50);
        expect(star).toEqual([`${base}.a`, `${base}.b`]);
        expect(tail).toEqual([`${base}.a`, `${base}.a.b`, `${base}.a.c`, `${base}.b`, `${base}.z.b`]);
        expect(exact).toEqual([`${base}.a.b`, `${base}.z.b`]);
      });

      it('a queue group hands each message to one member, round robin; plain subscribers get all; after a member leaves the rest get everything', async () => {
        const topic = uniqueTopic('queue');
        const got: Array<{ who: string; n: number }> = [];
        const everyone: number[] = [];
        @Controller()
        class Worker {
          constructor(@Inject('WHO') private readonly me: string) {}
          @Subscribe(topic, { queue: 'workers' })
          work(@Payload() d: { n: number }) {
            got.push({ who: this.me, n: d.n });
          }
        }
        @Controller()
        class Watcher {
          @Subscribe(topic)
          watch(@Payload() d: { n: number }) {
            everyone.push(d.n);
          }
        }
        await app([Worker, Watcher], [who('w1')]);
        const w2 = await app([Worker], [who('w2')]);
        await sleep(env.queueMembershipSettleMs);
        for (let n = 0; n < 10; n++) await client.produce(topic, { n });
        await eventually('10 deliveries', () => got.length >= 10 && everyone.length === 10);
        await sleep(50);
        expect(got.map(g => g.n).sort(byNumber)).toEqual(range(0, 10));
        expect(got.filter(g => g.who === 'w1')).toHaveLength(5);
        expect(got.filter(g => g.who === 'w2')).toHaveLength(5);
        expect(everyone).toEqual(range(0, 10));

        await closeApp(w2);
        await sleep(env.queueMembershipSettleMs);
        got.length = 0;
        for (let n = 10; n < 16; n++) await client.produce(topic, { n });
        await eventually('6 deliveries to w1', () => got.length >= 6 && everyone.length === 16);
        await sleep(50);
        expect(got).toEqual(range(10, 16).map(n => ({ who: 'w1', n })));
      });

      it('pushes only what is published after the subscription: listen() resolved means live', async () => {
        const topic = uniqueTopic('live');
        const seen: unknown[] = [];
        @Controller()
        class Late {
          @Subscribe(topic)
          on(@Payload() d: unknown) {
            seen.push(d);
          }
        }
        await client.produce(topic, { n: 'before' });
        await app([Late]);
        await client.produce(topic, { n: 'after' });
        await eventually('1 delivery', () => seen.length === 1);
        await sleep(50);
        expect(seen).toEqual([{ n: 'after' }]);
      });

      it('a failing push handler does not stop the next messages, nor the other handlers', async () => {
        const topic = uniqueTopic('pushfail');
        const ok: number[] = [];
        const tried: number[] = [];
        @Controller()
        class Handlers {
          @Subscribe(topic)
          bad(@Payload() d: { n: number }) {
            tried.push(d.n);
            if (d.n === 1) throw new Error('push handler bug');
          }
          @Subscribe(topic)
          good(@Payload() d: { n: number }) {
            ok.push(d.n);
          }
        }
        await app([Handlers]);
        await produceN(topic, 0, 4);
        await eventually('4 each', () => ok.length === 4 && tried.length === 4);
        expect(tried).toEqual(range(0, 4));
        expect(ok).toEqual(range(0, 4));
      });

      it('non-durable topics: pushed live with offset undefined, nothing stored; @Consume on one fails listen() with NOT_DURABLE', async () => {
        const topic = uniqueTopic('ephemeral');
        await client.createTopic(topic, { durable: false });
        const seen: Seen[] = [];
        @Controller()
        class Live {
          @Subscribe(topic)
          on(@Payload() d: unknown, @Ctx() ctx: LogBusContext) {
            seen.push(record('s', d, ctx));
          }
        }
        await app([Live]);
        expect(await client.produce(topic, { hello: 1 }, { key: 'k' })).toEqual({ topic, offset: undefined });
        expect(await client.produceBatch(topic, [{ data: { hello: 2 } }])).toEqual([{ topic, offset: undefined }]);
        await eventually('2 deliveries', () => seen.length === 2);
        expect(seen.map(s => s.data)).toEqual([{ hello: 1 }, { hello: 2 }]);
        expect(seen[0]).toMatchObject({ topic, offset: undefined, key: 'k', deliveryCount: 1, group: undefined });
        expect(await codeOf(client.read(topic))).toBe('NOT_DURABLE');
        expect((await client.topics()).find(t => t.name === topic)).toMatchObject({ durable: false });

        @Controller()
        class Puller {
          @Consume(topic, { group: 'g' })
          on() {}
        }
        const e = await listenError({ controllers: [Puller] }, env.options);
        expect(e).toBeInstanceOf(LogBusError);
        expect((e as LogBusError).code).toBe('NOT_DURABLE');
        expect((e as LogBusError).message).toContain(topic);
      });
    });

    describe('pull', () => {
      it('hands every message to a group once, in offset order, with the pull context; groups() reports lag 0 after', async () => {
        const topic = uniqueTopic('once');
        const seen: Seen[] = [];
        @Controller()
        class Billing {
          @Consume(topic, { group: 'billing' })
          bill(@Payload() d: { n: number }, @Ctx() ctx: LogBusContext) {
            seen.push(record('billing', d, ctx));
          }
        }
        const before = await env.brokerNow();
        const first = await client.produce(topic, { n: 0 }, { key: 'c-1', headers: { h: 'v' } });
        await produceN(topic, 1, 20);
        const after = await env.brokerNow();
        await app([Billing]);
        await eventually('20 messages', () => seen.length >= 20);
        await eventually('lag 0', async () => (await groupOf(topic, 'billing'))?.lag === 0);
        await sleep(50);
        expect(first.offset).toBe(0);
        expect(seen.map(s => s.data)).toEqual(range(0, 20).map(n => ({ n })));
        expect(seen.map(s => s.offset)).toEqual(range(0, 20));
        expect(seen[0]).toMatchObject({ topic, offset: 0, group: 'billing', deliveryCount: 1, key: 'c-1', headers: { h: 'v' } });
        expect(seen[1]).toMatchObject({ key: undefined, headers: {}, group: 'billing', deliveryCount: 1 });
        expect(seen[0].timestamp).toBeGreaterThanOrEqual(before);
        expect(seen[19].timestamp).toBeLessThanOrEqual(after);
        expect(await groupOf(topic, 'billing')).toEqual({ group: 'billing', committedOffset: 20, lag: 0, inFlight: 0 });
      });

      it('two groups are independent and each sees every message; instances of one group share them', async () => {
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
          constructor(@Inject('WHO') private readonly me: string) {}
          @Consume(topic, { group: 'shared', concurrency: 2 })
          async on(@Payload() d: { n: number }) {
            shared.push({ who: this.me, n: d.n });
            await sleep(2);
          }
        }
        await app([Two, Member], [who('m1')]);
        await app([Member], [who('m2')]);
        await produceN(topic, 0, 40);
        await eventually('all groups done', () => byGroup.a.length >= 40 && byGroup.b.length >= 40 && shared.length >= 40);
        await eventually('lags 0', async () => (await client.groups(topic)).every(g => g.lag === 0));
        expect(byGroup.a).toEqual(range(0, 40));
        expect([...byGroup.b].sort(byNumber)).toEqual(range(0, 40));
        expect(shared.map(s => s.n).sort(byNumber)).toEqual(range(0, 40));
        expect(new Set(shared.map(s => s.who))).toEqual(new Set(['m1', 'm2']));
        const groups = await client.groups(topic);
        expect(groups.map(g => g.group).sort()).toEqual(['a', 'b', 'shared']);
        for (const g of groups) expect(g).toMatchObject({ committedOffset: 40, lag: 0, inFlight: 0 });
      });

      it('keeps messages of one key in publish order, never two at once, across instances with concurrency > 1', async () => {
        const topic = uniqueTopic('keys');
        const active = new Set<string>();
        const order = new Map<string, number[]>();
        let overlaps = 0;
        let inFlight = 0;
        let maxInFlight = 0;
        @Controller()
        class Ordered {
          @Consume(topic, { group: 'ordered', concurrency: 4 })
          async on(@Payload() d: { n: number; k: string }) {
            if (active.has(d.k)) overlaps++;
            active.add(d.k);
            inFlight++;
            maxInFlight = Math.max(maxInFlight, inFlight);
            order.set(d.k, [...(order.get(d.k) ?? []), d.n]);
            await sleep(2 + (d.n % 3));
            inFlight--;
            active.delete(d.k);
          }
        }
        await app([Ordered]);
        await app([Ordered]);
        const keys = ['k0', 'k1', 'k2', 'k3'];
        await client.produceBatch(topic, range(0, 60).map(n => ({ data: { n, k: keys[n % 4] }, key: keys[n % 4] })));
        await eventually('60 messages', () => [...order.values()].reduce((s, l) => s + l.length, 0) >= 60);
        await eventually('lag 0', async () => (await groupOf(topic, 'ordered'))?.lag === 0);
        expect(overlaps).toBe(0);
        for (const [i, k] of keys.entries()) expect(order.get(k)).toEqual(range(0, 15).map(j => i + 4 * j));
        // different keys did run at the same time
        expect(maxInFlight).toBeGreaterThan(1);
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
        await app([Parallel]);
        await produceN(topic, 0, 10);
        await eventually('3 in flight', () => inFlight === 3);
        await eventually('groups() counts them in flight', async () => (await groupOf(topic, 'p'))?.inFlight === 3);
        expect(await groupOf(topic, 'p')).toEqual({ group: 'p', committedOffset: 0, lag: 10, inFlight: 3 });
        expect(inFlight).toBe(3);
        gate.open();
        await eventually('10 done', () => done === 10);
        await eventually('lag 0', async () => (await groupOf(topic, 'p'))?.lag === 0);
        expect(maxInFlight).toBe(3);
      });

      it('retries a failing message after each backoff, counting deliveries, then acks it', async () => {
        const topic = uniqueTopic('retry');
        const attempts: Array<{ count: number; at: number; offset?: number }> = [];
        @Controller()
        class Flaky {
          @Consume(topic, { group: 'flaky', backoffMs: [40, 80] })
          on(@Ctx() ctx: LogBusContext) {
            attempts.push({ count: ctx.getDeliveryCount(), at: Date.now(), offset: ctx.getOffset() });
            if (ctx.getDeliveryCount() < 4) throw new Error('not yet');
          }
        }
        await app([Flaky]);
        const { offset } = await client.produce(topic, { n: 1 });
        await eventually('4 attempts', () => attempts.length >= 4);
        await eventually('acked', async () => (await groupOf(topic, 'flaky'))?.lag === 0);
        expect(attempts.map(a => [a.count, a.offset])).toEqual([1, 2, 3, 4].map(c => [c, offset]));
        // never before its backoff (the last value repeats); 2 ms of timer slack
        expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(38);
        expect(attempts[2].at - attempts[1].at).toBeGreaterThanOrEqual(78);
        expect(attempts[3].at - attempts[2].at).toBeGreaterThanOrEqual(78);
      });

      it('dead-letters after maxDeliver attempts with the x-logbus-* headers and acks the original; deadLetter: false drops', async () => {
        const topic = uniqueTopic('poison');
        const dropTopic = uniqueTopic('drop');
        const deliveries: Record<string, number[]> = { first: [], second: [] };
        const dead: Array<{ data: unknown; headers: Record<string, string>; topic: string }> = [];
        let dropAttempts = 0;
        @Controller()
        class Poison {
          @Consume(topic, { group: 'billing', maxDeliver: 3, backoffMs: [20] })
          on(@Payload() d: { n: string }, @Ctx() ctx: LogBusContext) {
            deliveries[d.n].push(ctx.getDeliveryCount());
            throw new Error(`card declined for ${d.n}`);
          }
          @Consume(`${topic}.dlq`, { group: 'ops' })
          dlq(@Payload() d: unknown, @Ctx() ctx: LogBusContext) {
            dead.push({ data: d, headers: ctx.getHeaders(), topic: ctx.getTopic() });
          }
          @Consume(dropTopic, { group: 'g', maxDeliver: 2, backoffMs: [20], deadLetter: false })
          drop() {
            dropAttempts++;
            throw new Error('always');
          }
        }
        await app([Poison]);
        const statsBefore = await client.stats();
        const first = await client.produce(topic, { n: 'first' }, { headers: { trace: 'abc' } });
        const second = await client.produce(topic, { n: 'second' });
        await client.produce(dropTopic, {});
        await eventually('dead letters', () => dead.length === 2);
        expect(deliveries).toEqual({ first: [1, 2, 3], second: [1, 2, 3] });
        const byN = (n: string) => dead.find(x => (x.data as { n: string }).n === n);
        expect(byN('second')).toEqual({
          data: { n: 'second' },
          topic: `${topic}.dlq`,
          headers: {
            'x-logbus-topic': topic,
            'x-logbus-offset': String(second.offset),
            'x-logbus-deliveries': '3',
            'x-logbus-error': 'card declined for second',
          },
        });
        // the publisher's own headers travel along
        expect(byN('first')?.headers).toEqual({
          trace: 'abc',
          'x-logbus-topic': topic,
          'x-logbus-offset': String(first.offset),
          'x-logbus-deliveries': '3',
          'x-logbus-error': 'card declined for first',
        });
        expect((await client.read(`${topic}.dlq`)).map(m => m.data)).toEqual(expect.arrayContaining([{ n: 'first' }, { n: 'second' }]));
        await eventually('original acked', async () => (await groupOf(topic, 'billing'))?.lag === 0);
        await eventually('dropped after the last attempt', async () => dropAttempts === 2 && (await groupOf(dropTopic, 'g'))?.lag === 0);
        expect((await client.topics()).some(t => t.name === `${dropTopic}.dlq`)).toBe(false);
        // stats() counts for the whole broker: other tests' messages are not in flight now, so these are exact
        const stats = await client.stats();
        expect(stats.published - statsBefore.published).toBe(3 + 2); // 3 produced + 2 dead letters
        expect(stats.redelivered - statsBefore.redelivered).toBe(2 + 2 + 1);
        // messages given up on: the 2 dead letters and the 1 dropped by deadLetter: false
        expect(stats.deadLettered - statsBefore.deadLettered).toBe(3);
      });

      it('a message unacked after ackWaitMs is delivered again, with the next delivery count', async () => {
        const topic = uniqueTopic('ackwait');
        const counts: number[] = [];
        const hold = new Gate();
        @Controller()
        class Hung {
          @Consume(topic, { group: 'hung', ackWaitMs: 200, concurrency: 2 })
          async on(@Ctx() ctx: LogBusContext) {
            counts.push(ctx.getDeliveryCount());
            if (ctx.getDeliveryCount() === 1) await hold.opened;
          }
        }
        await app([Hung], [], { shutdownTimeoutMs: 50 });
        try {
          await client.produce(topic, {});
          await eventually('redelivered', () => counts.length === 2);
          expect(counts).toEqual([1, 2]);
        } finally {
          hold.open();
        }
      });

      it('an instance that closes hands its unacked messages to another member at once, long before ackWaitMs', async () => {
        const topic = uniqueTopic('handover');
        const got: Array<{ who: string; count: number }> = [];
        const hold = new Gate();
        @Controller()
        class Member {
          constructor(@Inject('WHO') private readonly me: string) {}
          @Consume(topic, { group: 'pair', ackWaitMs: 60_000 })
          async on(@Ctx() ctx: LogBusContext) {
            got.push({ who: this.me, count: ctx.getDeliveryCount() });
            if (this.me === 'first') await hold.opened;
          }
        }
        const first = await app([Member], [who('first')], { shutdownTimeoutMs: 50 });
        await client.produce(topic, {});
        await eventually('first has it', () => got.length === 1);
        await app([Member], [who('second')]);
        try {
          await closeApp(first);
          await eventually('second has it', () => got.length === 2, 10_000);
          expect(got).toEqual([
            { who: 'first', count: 1 },
            { who: 'second', count: 2 },
          ]);
          await eventually('acked', async () => (await groupOf(topic, 'pair'))?.lag === 0);
        } finally {
          hold.open();
        }
      });

      it('resumes after the last acked message across restarts of app and broker; resetGroup starts over; groups() shows lag', async () => {
        const topic = uniqueTopic('resume');
        const seen: number[] = [];
        @Controller()
        class Resume {
          @Consume(topic)
          on(@Payload() d: { n: number }) {
            seen.push(d.n);
          }
        }
        const server = { group: 'resumers' };
        await produceN(topic, 0, 5);
        let a = await app([Resume], [], server);
        await eventually('5 messages', () => seen.length === 5);
        await eventually('lag 0', async () => (await groupOf(topic, 'resumers'))?.lag === 0);
        await closeApp(a);

        // everything closed: the broker itself restarts (embedded: reopened from its dataDir)
        await client.close();
        await env.restartBroker();
        client = await newClient();
        expect(await groupOf(topic, 'resumers')).toEqual({ group: 'resumers', committedOffset: 5, lag: 0, inFlight: 0 });
        await produceN(topic, 5, 8);
        expect(await groupOf(topic, 'resumers')).toMatchObject({ committedOffset: 5, lag: 3 });
        a = await app([Resume], [], server);
        await eventually('8 messages', () => seen.length === 8);
        await eventually('lag 0', async () => (await groupOf(topic, 'resumers'))?.lag === 0);
        await closeApp(a);
        expect(seen).toEqual(range(0, 8));

        await client.resetGroup(topic, 'resumers', { offset: 6 });
        expect(await groupOf(topic, 'resumers')).toMatchObject({ committedOffset: 6, lag: 2 });
        a = await app([Resume], [], server);
        await eventually('2 again', () => seen.length === 10);
        await closeApp(a);
        await client.resetGroup(topic, 'resumers', 'earliest');
        expect(await groupOf(topic, 'resumers')).toMatchObject({ committedOffset: 0, lag: 8 });
        a = await app([Resume], [], server);
        await eventually('all again', () => seen.length === 18);
        await eventually('lag 0', async () => (await groupOf(topic, 'resumers'))?.lag === 0);
        await closeApp(a);
        await client.resetGroup(topic, 'resumers', 'latest');
        expect(await groupOf(topic, 'resumers')).toMatchObject({ committedOffset: 8, lag: 0 });
        expect(seen).toEqual([...range(0, 8), 6, 7, ...range(0, 8)]);
      });

      it("from: 'latest' starts a new group at the end; the existing group then resumes where it was", async () => {
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
        let a = await app([Late]);
        await produceN(topic, 3, 5);
        await eventually('2 messages', () => seen.length === 2);
        await closeApp(a);
        await produceN(topic, 5, 7);
        a = await app([Late]);
        await eventually('4 messages', () => seen.length === 4);
        await eventually('lag 0', async () => (await groupOf(topic, 'late'))?.lag === 0);
        expect(seen).toEqual([3, 4, 5, 6]);
      });
      it('from: { offset } and { timestamp } start a new group there (the timestamp on the broker clock)', async () => {
        const topic = uniqueTopic('from');
        await produceN(topic, 0, 3);
        await sleep(20);
        const since = await env.brokerNow();
        await sleep(20);
        await produceN(topic, 3, 5);
        const seen: Record<string, number[]> = { byOffset: [], byTime: [] };
        @Controller()
        class From {
          @Consume(topic, { group: 'by-offset', from: { offset: 2 } })
          a(@Payload() d: { n: number }) {
            seen.byOffset.push(d.n);
          }
          @Consume(topic, { group: 'by-time', from: { timestamp: since } })
          b(@Payload() d: { n: number }) {
            seen.byTime.push(d.n);
          }
        }
        await app([From]);
        await eventually('both groups', () => seen.byOffset.length === 3 && seen.byTime.length === 2);
        await eventually('lags 0', async () => (await client.groups(topic)).every(g => g.lag === 0));
        expect(seen).toEqual({ byOffset: [2, 3, 4], byTime: [3, 4] });
      });

      it('@Consume with neither its own group nor the server group fails listen() naming handler and topic', async () => {
        const topic = uniqueTopic('nogroup');
        @Controller()
        class Orphan {
          @Consume(topic)
          handle() {}
        }
        const e = await listenError({ controllers: [Orphan] }, env.options);
        expect(e).toBeInstanceOf(LogBusError);
        expect((e as LogBusError).code).toBe('INVALID_OPTION');
        expect((e as LogBusError).message).toContain('Orphan.handle');
        expect((e as LogBusError).message).toContain(topic);
      });
    });

    describe('request/response', () => {
      it('returns the value (object patterns, Observable streams); fails with the RpcException, NO_RESPONDERS at once, TIMEOUT after rpcTimeoutMs', async () => {
        const sum = uniqueTopic('sum');
        const fails = uniqueTopic('fails');
        const slow = uniqueTopic('slow');
        const never = new Gate();
        @Controller()
        class Rpc {
          @MessagePattern(sum)
          add(@Payload() nums: number[], @Ctx() ctx: LogBusContext) {
            return { total: nums.reduce((x, y) => x + y, 0), topic: ctx.getTopic(), offset: ctx.getOffset(), group: ctx.getGroup() };
          }
          @MessagePattern(fails)
          fail() {
            throw new RpcException({ code: 'OUT_OF_STOCK', message: 'no more apples' });
          }
          @MessagePattern({ cmd: 'double', scope: sum })
          async double(@Payload() n: number) {
            return n * 2;
          }
          @MessagePattern(`${sum}.count`)
          countUp(@Payload() n: number) {
            return from(range(1, n + 1)).pipe(rxDelay(1));
          }
          @MessagePattern(`${fails}.plain`)
          bug() {
            throw new Error('a bug with secrets');
          }
          @MessagePattern(slow)
          async late() {
            await never.opened;
            return 'late';
          }
        }
        await app([Rpc], [], { shutdownTimeoutMs: 50 });
        const quick = await newClient({ rpcTimeoutMs: 300 });
        try {
          expect(await lastValueFrom(client.send(sum, [1, 2, 3]))).toEqual({ total: 6, topic: sum, offset: undefined, group: undefined });
          await expect(lastValueFrom(client.send({ cmd: 'double', scope: sum }, 21))).resolves.toBe(42);
          // every value of an Observable reply, then completion
          await expect(lastValueFrom(client.send(`${sum}.count`, 4).pipe(toArray()))).resolves.toEqual([1, 2, 3, 4]);
          // an unexpected error's details stay on the server, as with Nest's own transports
          const bug = await lastValueFrom(client.send(`${fails}.plain`, {})).catch((e: unknown) => e);
          expect(bug).toBeInstanceOf(RpcException);
          expect(bug).toMatchObject({ status: 'error', message: 'Internal server error' });
          const err = await lastValueFrom(client.send(fails, {})).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(RpcException);
          expect((err as RpcException).getError()).toEqual({ code: 'OUT_OF_STOCK', message: 'no more apples' });
          // NO_RESPONDERS, not this client's 5 s TIMEOUT: it failed at once
          const none = await lastValueFrom(client.send(uniqueTopic('nobody'), {})).catch((e: unknown) => e);
          expect(none).toBeInstanceOf(LogBusError);
          expect((none as LogBusError).code).toBe('NO_RESPONDERS');
          const timeout = await lastValueFrom(quick.send(slow, {})).catch((e: unknown) => e);
          expect(timeout).toBeInstanceOf(LogBusError);
          expect((timeout as LogBusError).code).toBe('TIMEOUT');
        } finally {
          never.open();
          await quick.close();
        }
      });
      it('hands each request to exactly one of several live instances', async () => {
        const pattern = uniqueTopic('who');
        const handled: string[] = [];
        @Controller()
        class Who {
          constructor(@Inject('WHO') private readonly me: string) {}
          @MessagePattern(pattern)
          whoAmI() {
            handled.push(this.me);
            return this.me;
          }
        }
        await app([Who], [who('one')]);
        await app([Who], [who('two')]);
        const answers: string[] = [];
        for (let i = 0; i < 8; i++) answers.push(await lastValueFrom(client.send<string>(pattern, { i })));
        expect(handled).toEqual(answers);
        expect(answers).toHaveLength(8);
        for (const a of answers) expect(['one', 'two']).toContain(a);
      });
    });

    describe('client', () => {
      it('produce, emit and produceBatch give offsets from 0 with no gaps; read returns them oldest first', async () => {
        const topic = uniqueTopic('log');
        const before = await env.brokerNow();
        const r0 = await client.produce(topic, { a: 1 }, { key: 'k', headers: { h: '1' } });
        const r1 = await lastValueFrom(client.emit(topic, 'text'));
        const batch = await client.produceBatch<unknown>(topic, [{ data: [1, 2] }, { data: null, key: 'x' }, { data: 7, headers: { z: 'y' } }]);
        const after = await env.brokerNow();
        expect([r0, r1, ...batch]).toEqual(range(0, 5).map(offset => ({ topic, offset })));
        const all = await client.read(topic);
        expect(all.map(m => ({ offset: m.offset, key: m.key, headers: m.headers, data: m.data }))).toEqual([
          { offset: 0, key: 'k', headers: { h: '1' }, data: { a: 1 } },
          { offset: 1, key: undefined, headers: {}, data: 'text' },
          { offset: 2, key: undefined, headers: {}, data: [1, 2] },
          { offset: 3, key: 'x', headers: {}, data: null },
          { offset: 4, key: undefined, headers: { z: 'y' }, data: 7 },
        ]);
        for (const m of all) {
          expect(m.timestamp).toBeGreaterThanOrEqual(before);
          expect(m.timestamp).toBeLessThanOrEqual(after);
        }
        expect((await client.read(topic, { from: 1, max: 2 })).map(m => m.offset)).toEqual([1, 2]);
        expect((await client.read(topic, { from: 'earliest', max: 1 })).map(m => m.offset)).toEqual([0]);
        expect(await client.read(topic, { from: 5 })).toEqual([]);
        expect(await client.produceBatch(topic, [])).toEqual([]);
        expect((await client.topics()).find(t => t.name === topic)).toMatchObject({ durable: true, earliestOffset: 0, nextOffset: 5 });
      });

      it('rejects bad topics with INVALID_TOPIC and oversized messages with MESSAGE_TOO_LARGE, storing nothing', async () => {
        for (const bad of ['orders.*', 'orders.>', 'a..b', '', 'a b', '.a', 'x'.repeat(250)]) {
          expect(await codeOf(client.produce(bad, {}))).toBe('INVALID_TOPIC');
          expect(await codeOf(lastValueFrom(client.emit(bad, {})))).toBe('INVALID_TOPIC');
          expect(await codeOf(client.produceBatch(bad, [{ data: 1 }]))).toBe('INVALID_TOPIC');
        }
        const names = new Set((await client.topics()).map(t => t.name));
        for (const bad of ['orders.*', 'orders.>', 'a..b', 'a b']) expect(names.has(bad)).toBe(false);

        const topic = uniqueTopic('limit');
        await client.createTopic(topic, { maxMessageBytes: 1024 });
        expect(await codeOf(client.produce(topic, 'y'.repeat(2000)))).toBe('MESSAGE_TOO_LARGE');
        expect(await codeOf(lastValueFrom(client.emit(topic, 'y'.repeat(2000))))).toBe('MESSAGE_TOO_LARGE');
        // accepted whole or rejected whole
        expect(await codeOf(client.produceBatch(topic, [{ data: 'fits' }, { data: 'z'.repeat(2000) }]))).toBe('MESSAGE_TOO_LARGE');
        expect(await client.read(topic)).toEqual([]);
        expect(await client.produce(topic, 'fits')).toEqual({ topic, offset: 0 });
        expect((await client.read(topic)).map(m => [m.offset, m.data])).toEqual([[0, 'fits']]);
      });
    });
  });
}
