/**
 * The same decorators on Redis, through Nest: LogBusServer and LogBusClient
 * with a redis:// url and nothing else changed.
 */
import 'reflect-metadata';
import { Controller, type INestMicroservice } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import { firstValueFrom } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusServer, Subscribe, type LogBusOptions } from '../../lib/index.js';
import { deleteKeys, REDIS_URL, requireRedis, uniquePrefix, waitFor } from './helpers.js';

let admin: Redis;
const prefix = uniquePrefix();
const options: LogBusOptions = { url: REDIS_URL, prefix, rpcTimeoutMs: 5000 };

beforeAll(async () => {
  admin = await requireRedis();
});
afterAll(async () => {
  await deleteKeys(admin, prefix);
  admin.disconnect();
});

async function startApp(controllers: Array<new (...a: never[]) => unknown>): Promise<INestMicroservice> {
  const moduleRef = await Test.createTestingModule({ controllers }).compile();
  const app = moduleRef.createNestMicroservice({ strategy: new LogBusServer(options), logger: false });
  await app.listen();
  return app;
}

test('@Subscribe, @EventPattern, @Consume and @MessagePattern run on Redis by changing the url', async () => {
  const pushed: string[] = [];
  const evented: string[] = [];
  const consumed: Array<{ id: string; offset?: number; group?: string; count: number; key?: string }> = [];
  @Controller()
  class Orders {
    @Subscribe('orders.*')
    onPush(@Payload() o: { id: string }) {
      pushed.push(o.id);
    }
    @EventPattern('orders.created')
    onEvent(@Payload() o: { id: string }) {
      evented.push(o.id);
    }
    @Consume('orders.created', { group: 'billing' })
    bill(@Payload() o: { id: string }, @Ctx() ctx: LogBusContext) {
      consumed.push({ id: o.id, offset: ctx.getOffset(), group: ctx.getGroup(), count: ctx.getDeliveryCount(), key: ctx.getKey() });
    }
    @MessagePattern('orders.total')
    total(@Payload() xs: number[]) {
      return xs.reduce((a, b) => a + b, 0);
    }
  }
  const app = await startApp([Orders]);
  const client = new LogBusClient(options);
  try {
    await client.connect();
    const r = await client.produce('orders.created', { id: 'a' }, { key: 'cust-1' });
    expect(r.offset).toBe(0);
    await firstValueFrom(client.emit('orders.created', { id: 'b' }));
    await waitFor('push, event and pull handlers', () => pushed.length === 2 && evented.length === 2 && consumed.length === 2);
    expect(pushed).toEqual(['a', 'b']);
    expect(evented).toEqual(['a', 'b']);
    expect(consumed).toEqual([
      { id: 'a', offset: 0, group: 'billing', count: 1, key: 'cust-1' },
      { id: 'b', offset: 1, group: 'billing', count: 1, key: undefined },
    ]);
    expect(await firstValueFrom(client.send('orders.total', [1, 2, 3]))).toBe(6);
    const noOne = await firstValueFrom(client.send('nobody.listens', 1)).catch(e => e);
    expect(JSON.stringify(noOne)).toContain('NO_RESPONDERS');
    await waitFor('acked', async () => (await client.groups('orders.created'))[0]?.lag === 0);
    expect((await client.read('orders.created', { from: 'earliest' })).map(m => m.data)).toEqual([{ id: 'a' }, { id: 'b' }]);
  } finally {
    await client.close();
    await app.close();
  }
});
