import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer } from 'node:net';
import { Controller, type INestMicroservice } from '@nestjs/common';
import { Ctx, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusError, Subscribe, type LogBusOptions } from '../../lib/index.js';
import { eventually, startApp, tempDir } from './helpers.js';

/** The same handlers, unchanged, on every driver the url can choose. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>(r => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>(r => srv.close(() => r()));
  return port;
}

interface Driver {
  name: string;
  setup(): Promise<{ server: LogBusOptions; client: LogBusOptions; teardown(): Promise<void> }>;
}

const drivers: Driver[] = [
  {
    name: 'embedded',
    async setup() {
      const dir = await tempDir('drv-embedded');
      return { server: { dataDir: dir.path }, client: { dataDir: dir.path }, teardown: () => dir.remove() };
    },
  },
  {
    name: 'logbus:// (wire)',
    async setup() {
      const dir = await tempDir('drv-wire');
      const port = await freePort();
      return {
        server: { dataDir: dir.path, listen: { port } },
        client: { url: `logbus://127.0.0.1:${port}` },
        teardown: () => dir.remove(),
      };
    },
  },
  {
    name: 'redis://',
    async setup() {
      const prefix = `logbus-e2e-${process.pid}-${Date.now()}`;
      const url = 'redis://127.0.0.1:6379';
      return {
        server: { url, prefix },
        client: { url, prefix },
        async teardown() {
          // leave nothing behind on the shared Redis
          const { Redis } = await import('ioredis');
          const redis = new Redis(url, { lazyConnect: true });
          await redis.connect();
          let cursor = '0';
          do {
            const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
            cursor = next;
            if (keys.length) await redis.del(...keys);
          } while (cursor !== '0');
          await redis.quit();
        },
      };
    },
  },
];

describe.each(drivers)('the same decorators on $name', driver => {
  let app: INestMicroservice;
  let client: LogBusClient;
  let teardown: () => Promise<void>;
  const pushedA: unknown[] = [];
  const pushedB: unknown[] = [];
  const pulled: Array<{ data: unknown; offset?: number; group?: string; count: number; key?: string }> = [];
  let failures = 0;

  @Controller()
  class Service {
    @Subscribe('drv.events')
    a(@Payload() d: object) {
      pushedA.push(d);
    }
    @Subscribe('drv.*')
    b(@Payload() d: object) {
      pushedB.push(d);
    }
    @Consume('drv.events', { group: 'workers', backoffMs: [20] })
    pull(@Payload() d: { n: number }, @Ctx() ctx: LogBusContext) {
      if (d.n === 1 && ctx.getDeliveryCount() === 1) {
        failures++;
        throw new Error('first attempt fails');
      }
      pulled.push({ data: d, offset: ctx.getOffset(), group: ctx.getGroup(), count: ctx.getDeliveryCount(), key: ctx.getKey() });
    }
    @MessagePattern('drv.add')
    add(@Payload() nums: number[]) {
      return nums.reduce((x, y) => x + y, 0);
    }
    @MessagePattern('drv.fail')
    fail() {
      throw new RpcException('refused');
    }
  }

  beforeAll(async () => {
    const env = await driver.setup();
    teardown = env.teardown;
    app = await startApp({ controllers: [Service] }, env.server);
    client = new LogBusClient({ ...env.client, rpcTimeoutMs: 5000 });
    await client.connect();
  });
  afterAll(async () => {
    await client?.close();
    await app?.close();
    await teardown?.();
  });

  it('push fans out, pull retries and acks with offsets, RPC answers and fails like Nest', async () => {
    const r0 = await client.produce('drv.events', { n: 0 }, { key: 'k' });
    const r1 = await client.produce('drv.events', { n: 1 }, { key: 'k' });
    expect(r1.offset).toBe(r0.offset! + 1);
    await eventually('deliveries', () => pushedA.length === 2 && pushedB.length === 2 && pulled.length === 2);
    expect(pushedA).toEqual([{ n: 0 }, { n: 1 }]);
    expect(pushedB).toEqual([{ n: 0 }, { n: 1 }]);
    expect(failures).toBe(1);
    expect(pulled).toEqual([
      { data: { n: 0 }, offset: r0.offset, group: 'workers', count: 1, key: 'k' },
      { data: { n: 1 }, offset: r1.offset, group: 'workers', count: 2, key: 'k' },
    ]);
    expect(await lastValueFrom(client.send('drv.add', [1, 2, 3]))).toBe(6);
    const err = await lastValueFrom(client.send('drv.fail', {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcException);
    expect(err).toMatchObject({ message: 'refused' });
    const none = await lastValueFrom(client.send('drv.nobody', {})).catch((e: unknown) => e);
    expect((none as LogBusError).code).toBe('NO_RESPONDERS');
    await eventually('lag 0', async () => (await client.groups('drv.events')).find(g => g.group === 'workers')?.lag === 0);
    expect((await client.read('drv.events')).map(m => m.data)).toEqual([{ n: 0 }, { n: 1 }]);
  });
});
