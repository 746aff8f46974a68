import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Inject, type INestMicroservice } from '@nestjs/common';
import { Ctx, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { firstValueFrom, lastValueFrom, toArray, delay as rxDelay, from } from 'rxjs';
import { LogBusClient, LogBusContext, LogBusError } from '../../lib/index.js';
import { Gate, startApp, uniqueTopic } from './helpers.js';

const dataDir = ':memory:';
let client: LogBusClient;
const sum = uniqueTopic('math.sum');
const slow = uniqueTopic('slow');
const who = uniqueTopic('who');
const never = new Gate();

@Controller()
class MathController {
  constructor(@Inject('WHO') private readonly me: string) {}

  @MessagePattern(sum)
  add(@Payload() nums: number[], @Ctx() ctx: LogBusContext) {
    return { total: nums.reduce((a, b) => a + b, 0), topic: ctx.getTopic(), offset: ctx.getOffset(), group: ctx.getGroup() };
  }

  @MessagePattern({ cmd: 'double' })
  async double(@Payload() n: number) {
    return n * 2;
  }

  @MessagePattern('count.up')
  countUp(@Payload() n: number) {
    return from(Array.from({ length: n }, (_, i) => i + 1)).pipe(rxDelay(1));
  }

  @MessagePattern('fails.rpc')
  failsRpc() {
    throw new RpcException({ code: 'OUT_OF_STOCK', message: 'no more apples' });
  }

  @MessagePattern('fails.plain')
  failsPlain() {
    throw new Error('a bug');
  }

  @MessagePattern(slow)
  async slowOne() {
    await never.opened;
    return 'late';
  }

  @MessagePattern(who)
  whoAmI() {
    return this.me;
  }
}

const apps: INestMicroservice[] = [];
beforeAll(async () => {
  apps.push(await startApp({ controllers: [MathController], providers: [{ provide: 'WHO', useValue: 'one' }] }, { dataDir }));
  apps.push(await startApp({ controllers: [MathController], providers: [{ provide: 'WHO', useValue: 'two' }] }, { dataDir }));
  client = new LogBusClient({ dataDir, rpcTimeoutMs: 200 });
});
afterAll(async () => {
  never.open();
  await client.close();
  for (const app of apps) await app.close();
});

describe('RPC: @MessagePattern and client.send', () => {
  it('returns the handler value, connecting on first use; a request has no offset nor group', async () => {
    await expect(firstValueFrom(client.send(sum, [1, 2, 3]))).resolves.toEqual({ total: 6, topic: sum, offset: undefined, group: undefined });
  });

  it('supports object patterns and async handlers', async () => {
    await expect(lastValueFrom(client.send({ cmd: 'double' }, 21))).resolves.toBe(42);
  });

  it('streams every value of an Observable reply, then completes', async () => {
    await expect(lastValueFrom(client.send('count.up', 4).pipe(toArray()))).resolves.toEqual([1, 2, 3, 4]);
  });

  it('sends each request to exactly one live instance, round robin', async () => {
    const answers: string[] = [];
    for (let i = 0; i < 6; i++) answers.push(await lastValueFrom(client.send<string>(who, {})));
    expect(answers.filter(a => a === 'one')).toHaveLength(3);
    expect(answers.filter(a => a === 'two')).toHaveLength(3);
  });

  it("delivers the handler's RpcException to the caller as an RpcException", async () => {
    const err = await lastValueFrom(client.send('fails.rpc', {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcException);
    expect((err as RpcException).getError()).toEqual({ code: 'OUT_OF_STOCK', message: 'no more apples' });
    expect(err).toMatchObject({ code: 'OUT_OF_STOCK', message: 'no more apples' });
  });

  it("hides an unexpected error's details like Nest's own transports", async () => {
    const err = await lastValueFrom(client.send('fails.plain', {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcException);
    expect(err).toMatchObject({ status: 'error', message: 'Internal server error' });
  });

  it('fails at once with NO_RESPONDERS when nobody handles the pattern', async () => {
    const err = await lastValueFrom(client.send('nobody.home', {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LogBusError);
    expect((err as LogBusError).code).toBe('NO_RESPONDERS');
  });

  it('fails with TIMEOUT after rpcTimeoutMs', async () => {
    const err = await lastValueFrom(client.send(slow, {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LogBusError);
    expect((err as LogBusError).code).toBe('TIMEOUT');
  });

  it('rejects a missing payload like Nest', async () => {
    await expect(lastValueFrom(client.send(sum, undefined))).rejects.toThrow('The invalid data or message pattern');
  });
});
