import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  Catch,
  Controller,
  Injectable,
  UseFilters,
  UseGuards,
  UseInterceptors,
  type ArgumentsHost,
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  type INestMicroservice,
  type NestInterceptor,
  type PipeTransform,
  type RpcExceptionFilter,
} from '@nestjs/common';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { lastValueFrom, map, throwError, type Observable } from 'rxjs';
import { Consume, LogBusClient, Subscribe } from '../../lib/index.js';
import { eventually, startApp, uniqueTopic } from './helpers.js';

/**
 * The server's fast paths (no Observable for plain results, no hook
 * machinery) must still run every handler through the proxy Nest built:
 * guards, interceptors, pipes and exception filters apply to push, pull and
 * RPC handlers alike.
 */
type Msg = { n: number; deny?: boolean; fail?: boolean; piped?: boolean };

const seen: Record<'push' | 'pull', Msg[]> = { push: [], pull: [] };
const intercepted: string[] = [];

@Injectable()
class DenyGuard implements CanActivate {
  canActivate(ctx: ExecutionContext): boolean {
    return !(ctx.switchToRpc().getData() as Msg).deny;
  }
}

@Injectable()
class TagInterceptor implements NestInterceptor {
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    intercepted.push(ctx.getHandler().name);
    return next.handle().pipe(map(v => (typeof v === 'number' ? v * 10 : v)));
  }
}

const markPiped: PipeTransform = { transform: (v: Msg) => ({ ...v, piped: true }) };

@Catch()
class ShapeFilter implements RpcExceptionFilter {
  catch(e: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => ({ filtered: true, message: (e as Error).message }));
  }
}

const topic = uniqueTopic('enhanced');

@Controller()
@UseGuards(DenyGuard)
@UseFilters(new ShapeFilter())
class Enhanced {
  @Subscribe(`${topic}.push`)
  @UseInterceptors(TagInterceptor)
  push(@Payload(markPiped) d: Msg) {
    seen.push.push(d);
  }

  @Consume(`${topic}.pull`, { group: 'g' })
  @UseInterceptors(TagInterceptor)
  pull(@Payload(markPiped) d: Msg) {
    seen.pull.push(d);
  }

  @MessagePattern(`${topic}.plain`)
  plain(@Payload(markPiped) d: Msg) {
    if (d.fail) throw new Error('boom');
    return { piped: d.piped === true, n: d.n };
  }

  @MessagePattern(`${topic}.times`)
  @UseInterceptors(TagInterceptor)
  times(@Payload() d: Msg) {
    return d.n;
  }
}

const dataDir = ':memory:';
let app: INestMicroservice;
let client: LogBusClient;

beforeAll(async () => {
  app = await startApp({ controllers: [Enhanced], providers: [DenyGuard, TagInterceptor] }, { dataDir });
  client = new LogBusClient({ dataDir, rpcTimeoutMs: 5000 });
  await client.connect();
});
afterAll(async () => {
  await client.close();
  await app.close();
});

describe("Nest's guards, interceptors, pipes and filters apply on every handler kind", () => {
  it('push and pull handlers: the pipe transforms, the guard refuses, the interceptor runs', async () => {
    for (const kind of ['push', 'pull'] as const) {
      await client.produceBatch<Msg>(`${topic}.${kind}`, [{ data: { n: 1 } }, { data: { n: 2, deny: true } }, { data: { n: 3 } }]);
    }
    await eventually('push and pull handled', () => seen.push.length === 2 && seen.pull.length === 2);
    expect(seen.push).toEqual([{ n: 1, piped: true }, { n: 3, piped: true }]);
    expect(seen.pull).toEqual([{ n: 1, piped: true }, { n: 3, piped: true }]);
    expect(intercepted.filter(h => h === 'push')).toHaveLength(2);
    expect(intercepted.filter(h => h === 'pull')).toHaveLength(2);
  });

  it('RPC: a plain result passes the pipe; the interceptor maps the reply; the guard and the filter shape errors', async () => {
    expect(await lastValueFrom(client.send(`${topic}.plain`, { n: 4 }))).toEqual({ piped: true, n: 4 });
    expect(await lastValueFrom(client.send(`${topic}.times`, { n: 4 }))).toBe(40);
    const failed = await lastValueFrom(client.send(`${topic}.plain`, { n: 5, fail: true })).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(RpcException);
    expect(failed).toMatchObject({ filtered: true, message: 'boom' });
    const denied = await lastValueFrom(client.send(`${topic}.plain`, { n: 6, deny: true })).catch((e: unknown) => e);
    expect(denied).toMatchObject({ filtered: true, message: 'Forbidden resource' });
  });
});
