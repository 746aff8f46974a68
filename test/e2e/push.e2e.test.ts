import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Inject, type INestMicroservice } from '@nestjs/common';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusError, Subscribe } from '../../lib/index.js';
import { PUSH_CONCURRENCY } from '../../lib/nest/push-lane.js';
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

describe('push: @Subscribe and @EventPattern', () => {
  it('fans every message out to every push handler on the topic, with the context of the publish', async () => {
    const topic = uniqueTopic('fanout');
    const seen: Seen[] = [];
    @Controller()
    class Handlers {
      @Subscribe(topic)
      a(@Payload() data: unknown, @Ctx() ctx: LogBusContext) {
        seen.push(record('a', data, ctx));
      }
      @Subscribe(topic)
      b(@Payload() data: unknown, @Ctx() ctx: LogBusContext) {
        seen.push(record('b', data, ctx));
      }
      // the explicit <string> picks Nest 12's untyped overload, which allows an @Ctx() parameter
      @EventPattern<string>(topic)
      c(@Payload() data: object, @Ctx() ctx: LogBusContext) {
        seen.push(record('c', data, ctx));
      }
    }
    const app = await startApp({ controllers: [Handlers] }, { dataDir });
    try {
      const before = Date.now();
      const first = await client.produce(topic, { n: 1 }, { key: 'k1', headers: { trace: 't-1' } });
      const second = await client.produce(topic, { n: 2 });
      await eventually('6 deliveries', () => seen.length === 6);
      for (const by of ['a', 'b', 'c']) {
        const mine = seen.filter(s => s.by === by);
        expect(mine.map(s => s.data)).toEqual([{ n: 1 }, { n: 2 }]);
        expect(mine[0]).toMatchObject({ topic, offset: first.offset, key: 'k1', headers: { trace: 't-1' }, deliveryCount: 1, group: undefined });
        expect(mine[1]).toMatchObject({ offset: second.offset, key: undefined, headers: {}, deliveryCount: 1 });
        expect(mine[0].timestamp).toBeGreaterThanOrEqual(before - 1000);
        expect(mine[0].timestamp).toBeLessThanOrEqual(Date.now());
      }
      expect(second.offset).toBe(first.offset! + 1);
    } finally {
      await app.close();
    }
  });

  it('matches wildcards: * one segment, > one or more trailing segments', async () => {
    const base = uniqueTopic('wild');
    const star: string[] = [];
    const tail: string[] = [];
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
    }
    const app = await startApp({ controllers: [Handlers] }, { dataDir });
    try {
      for (const t of [`${base}.created`, `${base}.eu.created`, base, `${base}.paid`]) await client.produce(t, {});
      await eventually('deliveries', () => star.length === 2 && tail.length === 3);
      expect(star).toEqual([`${base}.created`, `${base}.paid`]);
      expect(tail).toEqual([`${base}.created`, `${base}.eu.created`, `${base}.paid`]);
    } finally {
      await app.close();
    }
  });

  it('a queue group hands each message to one member, round robin; plain subscribers still get all', async () => {
    const topic = uniqueTopic('queue');
    const got: Array<{ who: string; n: number }> = [];
    const everyone: number[] = [];
    @Controller()
    class Worker {
      constructor(@Inject('WHO') private readonly who: string) {}
      @Subscribe(topic, { queue: 'workers' })
      work(@Payload() d: { n: number }) {
        got.push({ who: this.who, n: d.n });
      }
    }
    @Controller()
    class Watcher {
      @Subscribe(topic)
      watch(@Payload() d: { n: number }) {
        everyone.push(d.n);
      }
    }
    const apps: INestMicroservice[] = [];
    try {
      apps.push(await startApp({ controllers: [Worker, Watcher], providers: [{ provide: 'WHO', useValue: 'w1' }] }, { dataDir }));
      apps.push(await startApp({ controllers: [Worker], providers: [{ provide: 'WHO', useValue: 'w2' }] }, { dataDir }));
      for (let n = 0; n < 10; n++) await client.produce(topic, { n });
      await eventually('10 queue deliveries', () => got.length === 10 && everyone.length === 10);
      expect(got.map(g => g.n).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(got.filter(g => g.who === 'w1')).toHaveLength(5);
      expect(got.filter(g => g.who === 'w2')).toHaveLength(5);
      expect(everyone).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    } finally {
      for (const app of apps) await app.close();
    }
  });

  it('delivers only what is published after the subscription: listen() resolved means live', async () => {
    const topic = uniqueTopic('live');
    await client.produce(topic, { n: 'before' });
    const seen: unknown[] = [];
    @Controller()
    class Handlers {
      @Subscribe(topic)
      on(@Payload() d: unknown) {
        seen.push(d);
      }
    }
    const app = await startApp({ controllers: [Handlers] }, { dataDir });
    try {
      await lastValueFrom(client.emit(topic, { n: 'after' }));
      await eventually('one delivery', () => seen.length === 1);
      expect(seen).toEqual([{ n: 'after' }]);
    } finally {
      await app.close();
    }
  });

  it('a failing push handler is logged and does not stop the next messages', async () => {
    const topic = uniqueTopic('fails');
    const seen: number[] = [];
    @Controller()
    class Handlers {
      @Subscribe(topic)
      on(@Payload() d: { n: number }) {
        seen.push(d.n);
        if (d.n === 1) throw new Error('boom');
      }
    }
    const app = await startApp({ controllers: [Handlers] }, { dataDir });
    try {
      for (let n = 0; n < 3; n++) await client.produce(topic, { n });
      await eventually('3 deliveries', () => seen.length === 3);
      expect(seen).toEqual([0, 1, 2]);
    } finally {
      await app.close();
    }
  });

  it('non-durable topics: pushed live, nothing stored, offset undefined; @Consume on one fails at listen()', async () => {
    const topic = uniqueTopic('ephemeral');
    const topics = { [topic]: { durable: false } };
    const seen: Seen[] = [];
    @Controller()
    class Handlers {
      @Subscribe(topic)
      on(@Payload() d: unknown, @Ctx() ctx: LogBusContext) {
        seen.push(record('s', d, ctx));
      }
    }
    const app = await startApp({ controllers: [Handlers] }, { dataDir, topics });
    try {
      const result = await client.produce(topic, { hello: 1 });
      expect(result).toEqual({ topic, offset: undefined });
      await eventually('delivery', () => seen.length === 1);
      expect(seen[0]).toMatchObject({ data: { hello: 1 }, offset: undefined, topic });
      await expect(client.read(topic)).rejects.toMatchObject({ code: 'NOT_DURABLE' });
      const info = (await client.topics()).find(t => t.name === topic);
      expect(info?.durable).toBe(false);
    } finally {
      await app.close();
    }

    @Controller()
    class Puller {
      @Consume(topic, { group: 'g' })
      on() {}
    }
    const e = await listenError({ controllers: [Puller] }, { dataDir, topics });
    expect(e).toBeInstanceOf(LogBusError);
    expect((e as LogBusError).code).toBe('NOT_DURABLE');
    expect((e as LogBusError).message).toContain(topic);
  });

  it('a slow subscriber never blocks the publisher: past its buffer, its messages are dropped and counted', async () => {
    const topic = uniqueTopic('slow');
    const gate = new Gate();
    const slow: number[] = [];
    const fast: number[] = [];
    @Controller()
    class Slow {
      @Subscribe(topic)
      async slow(@Payload() d: { n: number }) {
        slow.push(d.n);
        await gate.opened;
      }
    }
    @Controller()
    class Fast {
      @Subscribe(topic)
      fast(@Payload() d: { n: number }) {
        fast.push(d.n);
      }
    }
    const slowApp = await startApp({ controllers: [Slow] }, { dataDir, subscriberBufferBytes: 4096 });
    const fastApp = await startApp({ controllers: [Fast] }, { dataDir });
    try {
      const droppedBefore = Object.values((await client.stats()).dropped).reduce((a, b) => a + b, 0);
      const body = 'x'.repeat(200);
      // every publish resolves although the slow handler holds all of its messages
      for (let n = 0; n < 100; n++) await client.produce(topic, { n, body });
      await eventually('the fast subscriber got all', () => fast.length === 100);
      const dropped = Object.values((await client.stats()).dropped).reduce((a, b) => a + b, 0) - droppedBefore;
      expect(dropped).toBeGreaterThan(0);
      expect(slow.length + dropped).toBe(100);
      gate.open();
    } finally {
      gate.open();
      await slowApp.close();
      await fastApp.close();
    }
  });

  it('a burst to an async push handler runs every message, a bounded number at a time, in delivery order of start', async () => {
    const topic = uniqueTopic('burst');
    const started: number[] = [];
    let running = 0;
    let maxRunning = 0;
    let finished = 0;
    @Controller()
    class Burst {
      @Subscribe(topic)
      async on(@Payload() d: { n: number }) {
        started.push(d.n);
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(1);
        running--;
        finished++;
      }
    }
    const app = await startApp({ controllers: [Burst] }, { dataDir });
    try {
      await client.produceBatch(topic, Array.from({ length: 2000 }, (_, n) => ({ data: { n } })));
      await eventually('2000 handled', () => finished === 2000);
      expect(started).toEqual(Array.from({ length: 2000 }, (_, i) => i));
      expect(maxRunning).toBeGreaterThan(1);
      expect(maxRunning).toBeLessThanOrEqual(PUSH_CONCURRENCY);
    } finally {
      await app.close();
    }
  });

  it('an @EventPattern with a bad pattern fails listen() with INVALID_TOPIC', async () => {
    @Controller()
    class Bad {
      @EventPattern('orders..created')
      on(@Payload() _d: object) {}
    }
    const e = await listenError({ controllers: [Bad] }, { dataDir });
    expect((e as LogBusError).code).toBe('INVALID_TOPIC');
  });
});
