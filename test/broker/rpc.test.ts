import { afterEach, describe, expect, it } from '@jest/globals';
import type { Broker } from '../../lib/broker/broker.js';
import type { BusConnection, RpcIncoming } from '../../lib/connection/types.js';
import { buf, openBroker, until } from './helpers.js';

let broker: Broker;
afterEach(async () => {
  await broker?.close();
});

async function setup() {
  ({ broker } = await openBroker());
  return { a: broker.connect(), b: broker.connect(), caller: broker.connect() };
}

/** Calls and collects replies until done or error. */
function call(c: BusConnection, pattern: string, value: string) {
  const replies: string[] = [];
  const result = new Promise<{ replies: string[]; error?: Error }>(resolve => {
    c.request(pattern, buf(value), {
      reply: (v, done) => {
        replies.push(v.toString());
        if (done) resolve({ replies });
      },
      error: e => resolve({ replies, error: e }),
    });
  });
  return result;
}

describe('rpc', () => {
  it('routes a request to one responder and returns its reply', async () => {
    const { a, caller } = await setup();
    await a.serveRpc('sum', req => {
      const [x, y] = JSON.parse(req.value.toString());
      req.reply(buf(String(x + y)), true);
    });
    expect(await call(caller, 'sum', '[2,3]')).toEqual({ replies: ['5'] });
  });

  it('streams several replies until done (Observables)', async () => {
    const { a, caller } = await setup();
    await a.serveRpc('count', req => {
      req.reply(buf('1'), false);
      setTimeout(() => {
        req.reply(buf('2'), false);
        req.reply(buf('3'), true);
        req.reply(buf('late'), true); // after done: ignored
      }, 2);
    });
    expect(await call(caller, 'count', '')).toEqual({ replies: ['1', '2', '3'] });
  });

  it('round robins among live responders', async () => {
    const { a, b, caller } = await setup();
    const seen: string[] = [];
    const serve = (name: string) => (req: RpcIncoming) => {
      seen.push(name);
      req.reply(buf(name), true);
    };
    await a.serveRpc('who', serve('a'));
    await b.serveRpc('who', serve('b'));
    for (let i = 0; i < 4; i++) await call(caller, 'who', '');
    expect(seen.sort()).toEqual(['a', 'a', 'b', 'b']);
  });

  it('fails with NO_RESPONDERS at once, and never before request() returned', async () => {
    const { caller } = await setup();
    let returned = false;
    const err = await new Promise<Error>(resolve => {
      caller.request('nobody', buf(''), {
        reply: () => undefined,
        error: e => {
          expect(returned).toBe(true);
          resolve(e);
        },
      });
      returned = true;
    });
    expect((err as { code?: string }).code).toBe('NO_RESPONDERS');
    expect(err.message).toContain('nobody');
  });

  it('a responder that goes away fails its pending requests with CONNECTION_LOST; a closed one gets no more', async () => {
    const { a, caller } = await setup();
    const got: RpcIncoming[] = [];
    await a.serveRpc('slow', req => got.push(req));
    const pending = call(caller, 'slow', '');
    await until(() => got.length === 1, 'request arrives');
    await a.close();
    const r = await pending;
    expect((r.error as { code?: string }).code).toBe('CONNECTION_LOST');
    expect(((await call(caller, 'slow', '')).error as { code?: string }).code).toBe('NO_RESPONDERS');
  });

  it('a caller that closes or cancels gets no replies, and a closed caller gets CLOSED', async () => {
    const { a, caller } = await setup();
    const got: RpcIncoming[] = [];
    await a.serveRpc('p', req => got.push(req));
    let replies = 0;
    const c = caller.request('p', buf(''), { reply: () => replies++, error: () => replies++ });
    await until(() => got.length === 1, 'request arrives');
    c.cancel();
    got[0].reply(buf('x'), true);
    expect(replies).toBe(0);
    await caller.close();
    const r = await call(caller, 'p', '');
    expect((r.error as { code?: string }).code).toBe('CLOSED');
  });

  it('RPC patterns are exact strings, such as Nest JSON object patterns', async () => {
    const { a, caller } = await setup();
    await a.serveRpc('{"cmd":"sum"}', req => req.reply(buf('ok'), true));
    expect(await call(caller, '{"cmd":"sum"}', '')).toEqual({ replies: ['ok'] });
    expect(((await call(caller, '{"cmd":"other"}', '')).error as { code?: string }).code).toBe('NO_RESPONDERS');
  });
});

describe('rpc limits', () => {
  it('bounds the requests waiting for replies per caller', async () => {
    const { RpcRouter } = await import('../../lib/broker/rpc-router.js');
    const router = new RpcRouter(() => undefined, 2);
    const server = { pending: 0 };
    const caller = { pending: 0 };
    const other = { pending: 0 };
    const incoming: RpcIncoming[] = [];
    router.serve(server, 'p', req => incoming.push(req));
    const errors: string[] = [];
    const replies: string[] = [];
    const handler = { reply: (v: Buffer) => replies.push(v.toString()), error: (e: Error) => errors.push((e as { code?: string }).code ?? '?') };
    router.request(caller, 'p', buf('1'), handler);
    router.request(caller, 'p', buf('2'), handler);
    router.request(caller, 'p', buf('3'), handler); // over the limit
    router.request(other, 'p', buf('4'), handler); // another caller is not affected
    await until(() => errors.length === 1 && incoming.length === 3, 'requests');
    expect(errors).toEqual(['INVALID_ARGUMENT']);
    incoming[0].reply(buf('r1'), true);
    expect(caller.pending).toBe(1);
    router.request(caller, 'p', buf('5'), handler); // room again
    await until(() => incoming.length === 4, 'fifth');
    expect(incoming.map(r => r.value.toString())).toEqual(['1', '2', '4', '5']);
    expect(replies).toEqual(['r1']);
  });
});
