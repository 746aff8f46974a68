import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { LogBusClient, LogBusError, Subscribe } from '../../lib/index.js';
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

describe('push: @Subscribe and @EventPattern', () => {
  // Fan-out, wildcards, queue groups, liveness, failing handlers and non-durable
  // topics are in test/contract, run on every driver; what stays here is specific
  // to the embedded broker and the Nest server's own limits.
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
