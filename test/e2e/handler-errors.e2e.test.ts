import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { Consume, LogBusClient, LogBusContext } from '../../lib/index.js';
import { eventually, startApp, uniqueTopic } from './helpers.js';

const dataDir = ':memory:';
let client: LogBusClient;

beforeAll(async () => {
  client = new LogBusClient({ dataDir });
  await client.connect();
});
afterAll(async () => {
  await client.close();
});

describe("@Consume keeps the handler's own error for the dead letter", () => {
  it('whether the method takes only the payload, only the context, or throws asynchronously', async () => {
    const topic = uniqueTopic('own-errors');
    const dead: Record<string, string> = {};
    @Controller()
    class Failing {
      @Consume(`${topic}.payload`, { group: 'g', maxDeliver: 1, deadLetter: `${topic}.dlq` })
      payloadOnly(@Payload() d: { n: number }) {
        throw new Error(`payload-only failed on ${d.n}`);
      }
      @Consume(`${topic}.ctx`, { group: 'g', maxDeliver: 1, deadLetter: `${topic}.dlq` })
      ctxOnly(@Ctx() ctx: LogBusContext) {
        throw new Error(`ctx-only failed on ${ctx.getTopic()}`);
      }
      @Consume(`${topic}.async`, { group: 'g', maxDeliver: 1, deadLetter: `${topic}.dlq` })
      async later(@Payload() d: { n: number }) {
        await new Promise(r => setImmediate(r));
        throw new Error(`async failed on ${d.n}`);
      }
      @Consume(`${topic}.dlq`, { group: 'ops' })
      dlq(@Ctx() ctx: LogBusContext) {
        const h = ctx.getHeaders();
        dead[h['x-logbus-topic']] = h['x-logbus-error'];
      }
    }
    const app = await startApp({ controllers: [Failing] }, { dataDir });
    try {
      await client.produce(`${topic}.payload`, { n: 1 });
      await client.produce(`${topic}.ctx`, { n: 2 });
      await client.produce(`${topic}.async`, { n: 3 });
      await eventually('three dead letters', () => Object.keys(dead).length === 3);
      expect(dead).toEqual({
        [`${topic}.payload`]: 'payload-only failed on 1',
        [`${topic}.ctx`]: `ctx-only failed on ${topic}.ctx`,
        [`${topic}.async`]: 'async failed on 3',
      });
    } finally {
      await app.close();
    }
  });
});
