import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Injectable, UseGuards, type CanActivate, type INestMicroservice } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom, take, toArray } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusServer, Subscribe } from '../../lib/index.js';
import type { BusConnection } from '../../lib/connection/types.js';
import { eventually, Gate, sleep, startApp, tempDir } from './helpers.js';

let dir: { path: string; remove(): Promise<void> };
let seq = 0;
const topicName = (base: string) => `${base}-${++seq}`;

beforeAll(async () => {
  dir = await tempDir('lifecycle');
});
afterAll(async () => {
  await dir.remove();
});

/** A client for one step; closing it (with every app closed) releases the broker, so the next open reads the disk. */
async function withClient<T>(fn: (c: LogBusClient) => Promise<T>): Promise<T> {
  const c = new LogBusClient({ dataDir: dir.path });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

const produceN = (c: LogBusClient, topic: string, from: number, to: number) =>
  c.produceBatch(
    topic,
    Array.from({ length: to - from }, (_, i) => ({ data: { n: from + i } })),
  );

describe('lifecycle on a real dataDir', () => {
  it('a restarted process resumes after the last acked message', async () => {
    const topic = topicName('resume');
    const seen: number[] = [];
    @Controller()
    class Billing {
      @Consume(topic, { group: 'billing' })
      bill(@Payload() d: { n: number }) {
        seen.push(d.n);
      }
    }
    await withClient(c => produceN(c, topic, 0, 5));
    let app = await startApp({ controllers: [Billing] }, { dataDir: dir.path });
    await eventually('5 messages', () => seen.length === 5);
    await app.close();

    await withClient(c => produceN(c, topic, 5, 10));
    app = await startApp({ controllers: [Billing] }, { dataDir: dir.path });
    await eventually('10 messages', () => seen.length === 10);
    await sleep(30);
    await app.close();
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await withClient(async c => expect((await c.groups(topic))[0]).toMatchObject({ group: 'billing', committedOffset: 10, lag: 0 }));
  });

  it('close() with handlers in flight waits for them, commits, and loses nothing', async () => {
    const topic = topicName('drain');
    const finished: number[] = [];
    const started: number[] = [];
    @Controller()
    class Slow {
      @Consume(topic, { group: 'slow', concurrency: 5 })
      async on(@Payload() d: { n: number }) {
        started.push(d.n);
        await sleep(40);
        finished.push(d.n);
      }
    }
    await withClient(c => produceN(c, topic, 0, 40));
    let app = await startApp({ controllers: [Slow] }, { dataDir: dir.path });
    await eventually('some in flight', () => started.length >= 8);
    await app.close();
    // everything that started before close() also finished (and was acked)
    expect([...finished].sort((a, b) => a - b)).toEqual([...started].sort((a, b) => a - b));
    const firstRun = new Set(finished);
    expect(firstRun.size).toBeLessThan(40);

    const secondRun: number[] = [];
    @Controller()
    class Rest {
      @Consume(topic, { group: 'slow', concurrency: 5 })
      on(@Payload() d: { n: number }) {
        secondRun.push(d.n);
      }
    }
    app = await startApp({ controllers: [Rest] }, { dataDir: dir.path });
    await eventually('the rest', () => firstRun.size + secondRun.length >= 40);
    await sleep(30);
    await app.close();
    // no acked message came again, none was lost
    expect(secondRun.filter(n => firstRun.has(n))).toEqual([]);
    expect([...firstRun, ...secondRun].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    await withClient(async c => expect((await c.groups(topic))[0]).toMatchObject({ lag: 0 }));
  });

  it('close() called from inside a handler does not deadlock', async () => {
    const topic = topicName('self-close');
    let app: INestMicroservice | undefined;
    let closedFromHandler = false;
    @Controller()
    class Stopper {
      @Consume(topic, { group: 'stopper' })
      async stop() {
        await app!.close();
        closedFromHandler = true;
      }
      @Subscribe(topic)
      async watch() {
        await sleep(5);
      }
    }
    app = await startApp({ controllers: [Stopper] }, { dataDir: dir.path, shutdownTimeoutMs: 60_000 });
    await withClient(c => c.produce(topic, { stop: true }));
    await eventually('close() returned inside the handler', () => closedFromHandler, 10_000);
  });

  it('a handler still running at the shutdown deadline does not hold close(); its message comes again', async () => {
    const topic = topicName('deadline');
    const stuck = new Gate();
    const deliveries: number[] = [];
    @Controller()
    class Stuck {
      @Consume(topic, { group: 'stuck' })
      async on(@Ctx() ctx: LogBusContext) {
        deliveries.push(ctx.getDeliveryCount());
        if (deliveries.length === 1) await stuck.opened;
      }
    }
    let app = await startApp({ controllers: [Stuck] }, { dataDir: dir.path, shutdownTimeoutMs: 100 });
    await withClient(c => c.produce(topic, {}));
    await eventually('in flight', () => deliveries.length === 1);
    await app.close();
    stuck.open();
    app = await startApp({ controllers: [Stuck] }, { dataDir: dir.path });
    await eventually('delivered again', () => deliveries.length === 2);
    await app.close();
    expect(deliveries[1]).toBeGreaterThanOrEqual(1);
  });

  it('push, pull and RPC handlers on one topic in one app each get what their kind promises', async () => {
    const topic = topicName('mixed');
    const got: Record<string, number[]> = { sub: [], event: [], g1: [], g2: [] };
    let guardCalls = 0;
    @Injectable()
    class CountingGuard implements CanActivate {
      canActivate() {
        guardCalls++;
        return true;
      }
    }
    @Controller()
    class Mixed {
      @Subscribe(topic)
      sub(@Payload() d: { n: number }) {
        got.sub.push(d.n);
      }
      @EventPattern<string>(topic)
      event(@Payload() d: { n: number }) {
        got.event.push(d.n);
      }
      @Consume(topic, { group: 'g1' })
      @UseGuards(CountingGuard)
      g1(@Payload() d: { n: number }) {
        got.g1.push(d.n);
      }
      @Consume(topic, { group: 'g2', concurrency: 2 })
      g2(@Payload() d: { n: number }) {
        got.g2.push(d.n);
      }
      @MessagePattern(topic)
      ask(@Payload() q: { n: number }) {
        return { seen: got.g1.length, echo: q.n };
      }
    }
    const app = await startApp({ controllers: [Mixed], providers: [CountingGuard] }, { dataDir: dir.path });
    try {
      await withClient(async c => {
        await produceN(c, topic, 0, 3);
        await eventually('all kinds', () => Object.values(got).every(l => l.length === 3));
        expect(got.sub).toEqual([0, 1, 2]);
        expect(got.event).toEqual([0, 1, 2]);
        expect(got.g1).toEqual([0, 1, 2]);
        expect([...got.g2].sort()).toEqual([0, 1, 2]);
        // a guard under @Consume still runs
        expect(guardCalls).toBe(3);
        expect(await lastValueFrom(c.send(topic, { n: 9 }))).toEqual({ seen: 3, echo: 9 });
      });
    } finally {
      await app.close();
    }
  });

  it('reports status, on() events and unwrap() like Nest transports', async () => {
    const server = new LogBusServer({ dataDir: dir.path });
    const events: string[] = [];
    server.on('connected', () => events.push('connected'));
    server.on('disconnected', () => events.push('disconnected'));
    const statuses = lastValueFrom(server.status.pipe(take(2), toArray()));
    expect(() => server.unwrap()).toThrow('listen');
    await new Promise<void>((resolve, reject) => server.listen(e => (e ? reject(e) : resolve())));
    const conn = server.unwrap<BusConnection>();
    expect(conn.status).toBe('connected');
    await server.close();
    expect(await statuses).toEqual(['connected', 'disconnected']);
    expect(events).toEqual(['connected', 'disconnected']);
    expect(() => server.on('nonsense' as 'connected', () => undefined)).toThrow('unknown event');
  });
});

describe('hooks, options and errors of the server', () => {
  let dir2: { path: string; remove(): Promise<void> };
  beforeAll(async () => {
    dir2 = await tempDir('server');
  });
  afterAll(async () => {
    await dir2.remove();
  });

  it("runs Nest's processing start and end hooks around push, pull and RPC handlers", async () => {
    const started: string[] = [];
    const ended: string[] = [];
    @Controller()
    class Hooked {
      @Subscribe('hooks.t')
      push() {}
      @Consume('hooks.t', { group: 'g' })
      pull() {}
      @MessagePattern('hooks.rpc')
      rpc() {
        return 1;
      }
    }
    const moduleRef = await (await import('@nestjs/testing')).Test.createTestingModule({ controllers: [Hooked] }).compile();
    const server = new LogBusServer({ dataDir: dir2.path });
    server.setOnProcessingStartHook((_t, ctx, done) => {
      started.push((ctx as LogBusContext).getGroup() ?? (ctx as LogBusContext).getTopic());
      return done();
    });
    server.setOnProcessingEndHook((_t, ctx) => ended.push((ctx as LogBusContext).getGroup() ?? (ctx as LogBusContext).getTopic()));
    const app = moduleRef.createNestMicroservice({ strategy: server, logger: false });
    await app.listen();
    try {
      await withClientAt(dir2.path, async c => {
        await c.produce('hooks.t', {});
        expect(await lastValueFrom(c.send('hooks.rpc', {}))).toBe(1);
        await eventually('hooks', () => ended.length === 3);
      });
      expect([...started].sort()).toEqual(['g', 'hooks.rpc', 'hooks.t']);
      expect([...ended].sort()).toEqual(['g', 'hooks.rpc', 'hooks.t']);
    } finally {
      await app.close();
    }
  });

  it('keeps the error a @Consume method threw for the dead-letter header, with or without @Ctx()', async () => {
    const dead: string[] = [];
    @Controller()
    class Fails {
      @Consume('errs.t', { group: 'g', maxDeliver: 1 })
      fail(@Payload() d: { why: string }) {
        throw new TypeError(d.why);
      }
      @Consume('errs.t.dlq', { group: 'ops' })
      dlq(@Payload() _d: object, @Ctx() ctx: LogBusContext) {
        dead.push(ctx.getHeaders()['x-logbus-error']);
      }
    }
    const app = await startApp({ controllers: [Fails] }, { dataDir: dir2.path });
    try {
      await withClientAt(dir2.path, c => c.produce('errs.t', { why: 'no such customer' }));
      await eventually('dead letter', () => dead.length === 1);
      expect(dead).toEqual(['no such customer']);
    } finally {
      await app.close();
    }
  });

  it('close() from inside a push or an RPC handler does not deadlock either', async () => {
    for (const kind of ['push', 'rpc'] as const) {
      let app: INestMicroservice | undefined;
      let closed = false;
      @Controller()
      class Closer {
        @Subscribe('closer.push')
        async push() {
          await app!.close();
          closed = true;
        }
        @MessagePattern('closer.rpc')
        async rpc() {
          await app!.close();
          closed = true;
          return 'bye';
        }
      }
      app = await startApp({ controllers: [Closer] }, { dataDir: dir2.path, shutdownTimeoutMs: 60_000 });
      await withClientAt(dir2.path, async c => {
        if (kind === 'push') await c.produce('closer.push', {});
        else c.send('closer.rpc', {}).subscribe({ error: () => undefined });
        await eventually(`close() returned inside the ${kind} handler`, () => closed, 10_000);
      });
    }
  });

  it('fails listen() with INVALID_OPTION on bad options', async () => {
    const server = new LogBusServer({ dataDir: dir2.path, shutdownTimeoutMs: 'later' });
    const e = await new Promise<unknown>(resolve => server.listen(resolve));
    expect(e).toMatchObject({ code: 'INVALID_OPTION' });
    expect((e as Error).message).toContain('shutdownTimeoutMs');
  });

  it('the client reports status and on() events', async () => {
    const c = new LogBusClient({ dataDir: dir2.path });
    const events: string[] = [];
    c.on('connected', () => events.push('connected'));
    c.on('disconnected', () => events.push('disconnected'));
    const statuses = lastValueFrom(c.status.pipe(take(2), toArray()));
    await c.connect();
    await c.close();
    expect(await statuses).toEqual(['connected', 'disconnected']);
    expect(events).toEqual(['connected', 'disconnected']);
  });
});

async function withClientAt<T>(path: string, fn: (c: LogBusClient) => Promise<T>): Promise<T> {
  const c = new LogBusClient({ dataDir: path });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}
