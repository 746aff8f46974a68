import { describe, expect, it } from '@jest/globals';
import { Inject, Injectable, Module } from '@nestjs/common';
import { ClientsModule } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { LogBusClient, LogBusError, LogBusModule } from '../../lib/index.js';
import { uniqueTopic } from './helpers.js';

const dataDir = ':memory:';

@Injectable()
class Orders {
  constructor(readonly bus: LogBusClient) {}
  place(topic: string, n: number) {
    return this.bus.produce(topic, { n });
  }
}

@Module({ providers: [Orders], exports: [Orders] })
class OrdersModule {}

const CONFIG = 'CONFIG';
@Module({ providers: [{ provide: CONFIG, useValue: { dir: dataDir, timeout: 1234 } }], exports: [CONFIG] })
class ConfigModule {}

async function expectClosed(p: Promise<unknown>): Promise<void> {
  const e = await p.catch((x: unknown) => x);
  expect(e).toBeInstanceOf(LogBusError);
  expect((e as LogBusError).code).toBe('CLOSED');
}

describe('LogBusModule', () => {
  it('forRoot({ isGlobal: true }) gives every module an injectable client, connected on init and closed on destroy', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [LogBusModule.forRoot({ dataDir, isGlobal: true }), OrdersModule] }).compile();
    await moduleRef.init();
    const orders = moduleRef.get(Orders);
    // connected by the module: the connection is there before any call
    expect(() => orders.bus.unwrap()).not.toThrow();
    const topic = uniqueTopic('module');
    expect(await orders.place(topic, 1)).toEqual({ topic, offset: 0 });
    expect((await orders.bus.read(topic)).map(m => m.data)).toEqual([{ n: 1 }]);
    expect(moduleRef.get(LogBusClient)).toBe(orders.bus);
    await moduleRef.close();
    await expectClosed(orders.place(topic, 2));
  });

  it('forRoot without isGlobal is available to the module that imports it', async () => {
    @Module({ imports: [LogBusModule.forRoot({ dataDir })], providers: [Orders] })
    class Feature {}
    const moduleRef = await Test.createTestingModule({ imports: [Feature] }).compile();
    await moduleRef.init();
    const topic = uniqueTopic('local');
    expect((await moduleRef.get(Orders).place(topic, 1)).offset).toBe(0);
    await moduleRef.close();
  });

  it('forRootAsync builds the options from injected providers', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        LogBusModule.forRootAsync({
          imports: [ConfigModule],
          inject: [CONFIG],
          useFactory: (cfg: { dir: string; timeout: number }) => ({ dataDir: cfg.dir, rpcTimeoutMs: cfg.timeout }),
          isGlobal: true,
        }),
        OrdersModule,
      ],
    }).compile();
    await moduleRef.init();
    const orders = moduleRef.get(Orders);
    const topic = uniqueTopic('async');
    expect((await orders.place(topic, 7)).offset).toBe(0);
    await moduleRef.close();
    await expectClosed(orders.place(topic, 8));
  });

  it("works as Nest's ClientsModule customClass", async () => {
    @Injectable()
    class Sender {
      constructor(@Inject('BUS') readonly bus: LogBusClient) {}
    }
    const moduleRef = await Test.createTestingModule({
      imports: [ClientsModule.register([{ name: 'BUS', customClass: LogBusClient, options: { dataDir } }])],
      providers: [Sender],
    }).compile();
    await moduleRef.init();
    const { bus } = moduleRef.get(Sender);
    expect(bus).toBeInstanceOf(LogBusClient);
    const topic = uniqueTopic('clients-module');
    expect((await bus.produce(topic, 1)).offset).toBe(0);
    await moduleRef.close();
    await expectClosed(bus.produce(topic, 2));
  });

  it('fails module init with INVALID_OPTION on bad options', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [LogBusModule.forRoot({ dataDir, rpcTimeoutMs: 'soon' })] }).compile();
    const e = await moduleRef.init().catch((x: unknown) => x);
    expect((e as LogBusError).code).toBe('INVALID_OPTION');
    await moduleRef.close();
  });
});
