import type { Redis } from 'ioredis';
import type { RedisConnection } from '../../lib/connection/redis/index.js';
import { isLogBusError } from '../../lib/errors.js';
import { Bus, buf, deleteKeys, requireRedis, uniquePrefix, waitFor } from './helpers.js';

let admin: Redis;
const prefix = uniquePrefix();
const bus = new Bus(prefix);

beforeAll(async () => {
  admin = await requireRedis();
});
afterAll(async () => {
  await bus.closeAll();
  await deleteKeys(admin, prefix);
  admin.disconnect();
});

interface Outcome {
  replies: Array<{ value: string; done: boolean }>;
  error?: Error;
}

function call(c: RedisConnection, pattern: string, value: string): Promise<Outcome> {
  return new Promise(resolve => {
    const out: Outcome = { replies: [] };
    c.request(pattern, buf(value), {
      reply: (v, done) => {
        out.replies.push({ value: v.toString(), done });
        if (done) resolve(out);
      },
      error: e => {
        out.error = e;
        resolve(out);
      },
    });
  });
}

describe('Redis driver: RPC', () => {
  test('a request gets the reply of the handler; several packets until done', async () => {
    const server = await bus.connection();
    const client = await bus.connection();
    await server.serveRpc('math.sum', req => {
      const n = JSON.parse(req.value.toString()) as number[];
      req.reply(buf(String(n.reduce((a, b) => a + b, 0))), true);
    });
    await server.serveRpc('count.up', req => {
      req.reply(buf('1'), false);
      req.reply(buf('2'), false);
      req.reply(buf('3'), true);
    });
    expect((await call(client, 'math.sum', '[1,2,3]')).replies).toEqual([{ value: '6', done: true }]);
    expect((await call(client, 'count.up', '')).replies).toEqual([
      { value: '1', done: false },
      { value: '2', done: false },
      { value: '3', done: true },
    ]);
  });

  test('NO_RESPONDERS at once when nobody serves the pattern, and after the responder closes', async () => {
    const server = await bus.connection();
    const client = await bus.connection();
    const none = await call(client, 'nobody.home', 'x');
    expect(isLogBusError(none.error, 'NO_RESPONDERS')).toBe(true);
    const served = await server.serveRpc('brief', req => req.reply(buf('here'), true));
    expect((await call(client, 'brief', 'x')).replies[0].value).toBe('here');
    await served.close();
    expect(isLogBusError((await call(client, 'brief', 'x')).error, 'NO_RESPONDERS')).toBe(true);
  });

  test('NO_RESPONDERS once the responding connection is gone', async () => {
    const server = await bus.connection();
    const client = await bus.connection();
    await server.serveRpc('fragile', req => req.reply(buf('ok'), true));
    expect((await call(client, 'fragile', 'x')).replies[0].value).toBe('ok');
    await server.close();
    expect(isLogBusError((await call(client, 'fragile', 'x')).error, 'NO_RESPONDERS')).toBe(true);
  });

  test('replies reach only their own client; each request is handled by exactly one responder', async () => {
    const r1 = await bus.connection();
    const r2 = await bus.connection();
    const c1 = await bus.connection();
    const c2 = await bus.connection();
    const handledBy: Record<string, string[]> = { r1: [], r2: [] };
    for (const [name, conn] of [
      ['r1', r1],
      ['r2', r2],
    ] as const) {
      await conn.serveRpc('echo', req => {
        handledBy[name].push(req.value.toString());
        setTimeout(() => req.reply(Buffer.concat([buf('re:'), req.value]), true), 1);
      });
    }
    const n = 40;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => call(i % 2 ? c1 : c2, 'echo', `${i % 2 ? 'c1' : 'c2'}-${i}`)),
    );
    results.forEach((r, i) => {
      expect(r.error).toBeUndefined();
      expect(r.replies).toEqual([{ value: `re:${i % 2 ? 'c1' : 'c2'}-${i}`, done: true }]);
    });
    const handled = [...handledBy.r1, ...handledBy.r2];
    expect(handled).toHaveLength(n);
    expect(new Set(handled).size).toBe(n);
  });

  test('a cancelled call gets nothing more; a closing client fails its calls with CLOSED', async () => {
    const server = await bus.connection();
    const client = await bus.connection();
    const held: Array<{ reply(v: Buffer, done: boolean): void }> = [];
    await server.serveRpc('slow.op', req => held.push(req));
    let got = 0;
    const cancelled = client.request('slow.op', buf('a'), { reply: () => got++, error: () => got++ });
    const pending = call(client, 'slow.op', 'b');
    await waitFor('both requests at the responder', () => held.length === 2);
    cancelled.cancel();
    held[0].reply(buf('late'), true);
    await client.close();
    const out = await pending;
    expect(isLogBusError(out.error, 'CLOSED')).toBe(true);
    expect(got).toBe(0);
  });
});
