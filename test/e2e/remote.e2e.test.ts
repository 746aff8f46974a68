import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, type INestMicroservice } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusError, Subscribe } from '../../lib/index.js';
import { freePort } from '../wire/children.js';
import { eventually, startApp, tempDir } from './helpers.js';

describe('an embedded server with `listen` serves remote clients (logbus://)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let app: INestMicroservice;
  let remote: LogBusClient;
  const pushed: unknown[] = [];
  const pulled: Array<{ data: unknown; group?: string; offset?: number }> = [];

  @Controller()
  class Service {
    @Subscribe('remote.events')
    onPush(@Payload() d: unknown) {
      pushed.push(d);
    }
    @Consume('remote.events', { group: 'workers' })
    onPull(@Payload() d: unknown, @Ctx() ctx: LogBusContext) {
      pulled.push({ data: d, group: ctx.getGroup(), offset: ctx.getOffset() });
    }
    @MessagePattern('remote.ping')
    ping(@Payload() n: number) {
      return { pong: n };
    }
  }

  beforeAll(async () => {
    dir = await tempDir('remote');
    const port = await freePort();
    app = await startApp({ controllers: [Service] }, { dataDir: dir.path, listen: { port } });
    remote = new LogBusClient({ url: `logbus://127.0.0.1:${port}`, rpcTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await remote.close();
    await app.close();
    await dir.remove();
  });

  it('publishes to push and pull handlers and calls RPC handlers over the network', async () => {
    const r = await remote.produce('remote.events', { n: 1 });
    expect(r).toEqual({ topic: 'remote.events', offset: 0 });
    await lastValueFrom(remote.emit('remote.events', { n: 2 }));
    await eventually('deliveries', () => pushed.length === 2 && pulled.length === 2);
    expect(pushed).toEqual([{ n: 1 }, { n: 2 }]);
    expect(pulled).toEqual([
      { data: { n: 1 }, group: 'workers', offset: 0 },
      { data: { n: 2 }, group: 'workers', offset: 1 },
    ]);
    expect(await lastValueFrom(remote.send('remote.ping', 7))).toEqual({ pong: 7 });
    expect((await remote.read('remote.events')).map(m => m.data)).toEqual([{ n: 1 }, { n: 2 }]);
    await eventually('acked', async () => (await remote.groups('remote.events'))[0]?.lag === 0);
  });

  it('reports the same error codes remotely', async () => {
    const e = await lastValueFrom(remote.send('nobody.there', 1)).catch((x: unknown) => x);
    expect((e as LogBusError).code).toBe('NO_RESPONDERS');
    const bad = await remote.produce('bad..topic', 1).catch((x: unknown) => x);
    expect((bad as LogBusError).code).toBe('INVALID_TOPIC');
  });
});
