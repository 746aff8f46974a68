/**
 * RPC on Redis.
 *
 * - Each pattern has a request list `P:{r:<pattern>}:q`. Responders pop it with
 *   BRPOP on one blocking connection per RedisConnection, so each request goes to
 *   exactly one responder (then RPOP a batch without blocking while requests wait).
 * - Liveness: a responder's subscriber connection SUBSCRIBEs `P:r:<pattern>`; the
 *   request script counts its subscribers (PUBSUB NUMSUB) and answers NO_RESPONDERS
 *   at once when there are none. Redis drops a dead responder's subscriptions when
 *   its connection closes, so there is no heartbeat delay. On Cluster the lists
 *   share one slot (`{r}`) and responders SSUBSCRIBE a sharded channel of that
 *   slot, so PUBSUB SHARDNUMSUB in the script counts all of them.
 * - Replies go to `P:reply:<clientId>`, a channel only the calling client subscribes to.
 * - Requests carry a deadline (now + rpcTimeoutMs); responders skip expired ones,
 *   and the list is capped (MAX_QUEUED) and expires when idle.
 */
import { randomBytes } from 'node:crypto';
import { LogBusError } from '../../errors.js';
import type { RpcCall, RpcIncoming, RpcReplyHandler } from '../types.js';
import { asBusError, sleep, trackClientId, type RedisClient } from './client.js';
import { decodeReply, decodeRequest, encodeReply, encodeRequest } from './codec.js';
import type { DriverContext } from './context.js';
import { RPC_REQUEST, RPC_REQUEST_SHARDED } from './scripts.js';

const MAX_QUEUED = 100_000;
const MAX_PENDING_CALLS = 100_000;
/** Requests handled at once by one responder connection. */
const MAX_IN_FLIGHT = 1024;
const POP_BATCH = 64;
const MAX_COALESCED_REQUESTS = 1000;

interface Served {
  pattern: string;
  onRequest: (req: RpcIncoming) => void;
}

export class RpcResponder {
  private readonly served = new Map<string, Served>();
  private blocking: RedisClient | undefined;
  private blockingId: string | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private inFlight = 0;
  private wake: (() => void) | undefined;
  private blmpop = true;

  constructor(
    private readonly ctx: DriverContext,
    private readonly sub: RedisClient,
  ) {}

  async serve(pattern: string, onRequest: (req: RpcIncoming) => void): Promise<{ close(): Promise<void> }> {
    if (typeof pattern !== 'string' || pattern === '') throw new LogBusError('INVALID_ARGUMENT', 'an RPC pattern must be a non-empty string');
    if (this.closed) throw new LogBusError('CLOSED', 'the Redis connection is closed');
    const queue = this.ctx.keys.rpcQueue(pattern);
    if (this.served.has(queue)) throw new LogBusError('INVALID_ARGUMENT', `pattern '${pattern}' is already served on this connection`);
    this.served.set(queue, { pattern, onRequest });
    await this.startLoop();
    const alive = this.ctx.keys.rpcAlive(pattern);
    await (this.ctx.cluster ? this.sub.ssubscribe(alive) : this.sub.subscribe(alive));
    await this.interrupt();
    let done = false;
    return {
      close: async () => {
        if (done) return;
        done = true;
        this.served.delete(queue);
        const alive = this.ctx.keys.rpcAlive(pattern);
        await (this.ctx.cluster ? this.sub.sunsubscribe(alive) : this.sub.unsubscribe(alive)).catch(() => undefined);
        await this.interrupt();
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.served.clear();
    this.wake?.();
    this.blocking?.disconnect(false);
    await this.running?.catch(() => undefined);
  }

  private async startLoop(): Promise<void> {
    if (this.blocking) return;
    const blocking = await this.ctx.openClient('rpc');
    this.blocking = blocking;
    // on Cluster there is no id to unblock: short waits pick up new patterns instead
    await trackClientId(blocking, this.ctx.cluster, id => (this.blockingId = id));
    this.running = this.loop(blocking);
  }

  /** New or closed pattern: wake the blocked BRPOP so it listens on the new set of lists. */
  private async interrupt(): Promise<void> {
    this.wake?.();
    if (this.blockingId) await this.ctx.main.call('CLIENT', 'UNBLOCK', this.blockingId).catch(() => undefined);
  }

  private async loop(blocking: RedisClient): Promise<void> {
    while (!this.closed) {
      const queues = [...this.served.keys()];
      if (queues.length === 0 || this.inFlight >= MAX_IN_FLIGHT) {
        await new Promise<void>(r => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      try {
        const room = Math.min(POP_BATCH, MAX_IN_FLIGHT - this.inFlight);
        if (this.blmpop) {
          // Redis >= 7: one round trip takes a whole batch
          const wait = this.ctx.cluster ? 0.2 : 1;
          const got = (await blocking.callBuffer('BLMPOP', wait, queues.length, ...queues, 'RIGHT', 'COUNT', room)) as [Buffer, Buffer[]] | null;
          if (!got) continue;
          const queue = got[0].toString();
          for (const m of got[1]) this.handle(queue, m);
        } else {
          const got = (await blocking.callBuffer('BRPOP', ...queues, 1)) as [Buffer, Buffer] | null;
          if (!got) continue;
          const queue = got[0].toString();
          this.handle(queue, got[1]);
          if (room > 1) {
            const more = (await blocking.callBuffer('RPOP', queue, room - 1)) as Buffer[] | null;
            for (const m of more ?? []) this.handle(queue, m);
          }
        }
      } catch (e) {
        if (this.closed) return;
        if (this.blmpop && /unknown command/i.test((e as Error)?.message ?? '')) {
          this.blmpop = false; // Redis 6.2
          continue;
        }
        this.ctx.logger.warn(`RPC responder: ${(e as Error)?.message ?? e}; retrying`);
        await sleep(200);
      }
    }
  }

  private handle(queue: string, buf: Buffer): void {
    const served = this.served.get(queue);
    if (!served) return; // closed meanwhile: the caller times out
    let req: ReturnType<typeof decodeRequest>;
    try {
      req = decodeRequest(buf);
    } catch (e) {
      this.ctx.logger.error(`dropped an RPC request for '${served.pattern}': ${(e as Error).message}`);
      return;
    }
    if (req.deadline < Date.now()) return; // the caller has given up already
    const channel = this.ctx.keys.replyChannel(req.clientId);
    const main = this.ctx.main;
    let finished = false;
    this.inFlight++;
    const incoming: RpcIncoming = {
      pattern: served.pattern,
      value: req.value,
      reply: (value: Buffer, done: boolean) => {
        if (finished) return;
        void main.call('PUBLISH', channel, encodeReply(req.requestId, done, value)).catch(e =>
          this.ctx.logger.warn(`RPC reply for '${served.pattern}' lost: ${(e as Error)?.message ?? e}`),
        );
        if (done) {
          finished = true;
          this.inFlight--;
          this.wake?.();
        }
      },
    };
    try {
      served.onRequest(incoming);
    } catch (e) {
      this.ctx.logger.error(`an RPC handler for '${served.pattern}' threw: ${(e as Error)?.message ?? e}`);
    }
  }
}

export class RpcRequester {
  private readonly pending = new Map<number, RpcReplyHandler>();
  private readonly outbound = new Map<string, { payloads: Buffer[]; fails: Array<(e: Error) => void> }>();
  private nextId = 1;
  private subscribed: Promise<unknown> | undefined;
  private readonly clientId: string;
  private readonly channel: string;
  private closed = false;

  constructor(
    private readonly ctx: DriverContext,
    private readonly sub: RedisClient,
  ) {
    this.clientId = `${ctx.instanceId}${randomBytes(4).toString('hex')}`;
    this.channel = ctx.keys.replyChannel(this.clientId);
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (this.pending.size === 0 || channel.toString() !== this.channel) return;
      this.onReply(message);
    });
    // replies sent while the subscriber was away are gone: fail the calls rather than let them hang
    const lost = () => this.failAll(() => new LogBusError('CONNECTION_LOST', 'the connection to Redis was lost while waiting for the reply'));
    sub.on('reconnecting', lost);
  }

  request(pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    const id = this.nextId++;
    const fail = (e: Error) => {
      if (this.pending.delete(id)) handler.error(e);
    };
    if (this.closed) {
      queueMicrotask(() => handler.error(new LogBusError('CLOSED', 'the Redis connection is closed')));
      return { cancel: () => undefined };
    }
    if (this.pending.size >= MAX_PENDING_CALLS) {
      queueMicrotask(() => handler.error(new LogBusError('TIMEOUT', `more than ${MAX_PENDING_CALLS} requests are waiting for replies`)));
      return { cancel: () => undefined };
    }
    this.pending.set(id, handler);
    const deadline = Date.now() + this.ctx.options.rpcTimeoutMs;
    let batch = this.outbound.get(pattern);
    if (!batch || batch.payloads.length >= MAX_COALESCED_REQUESTS) {
      const fresh = { payloads: [] as Buffer[], fails: [] as Array<(e: Error) => void> };
      this.outbound.set(pattern, fresh);
      setImmediate(() => void this.send(pattern, fresh));
      batch = fresh;
    }
    batch.payloads.push(encodeRequest(this.clientId, id, deadline, value));
    batch.fails.push(fail);
    return { cancel: () => void this.pending.delete(id) };
  }

  /** Requests to one pattern from one turn of the event loop: one script call. */
  private async send(pattern: string, batch: { payloads: Buffer[]; fails: Array<(e: Error) => void> }): Promise<void> {
    if (this.outbound.get(pattern) === batch) this.outbound.delete(pattern);
    try {
      this.subscribed ??= this.sub.subscribe(this.channel);
      await this.subscribed;
      const { keys, options } = this.ctx;
      const queued = await (this.ctx.cluster ? RPC_REQUEST_SHARDED : RPC_REQUEST).run(
        this.ctx.main,
        [keys.rpcQueue(pattern)],
        [keys.rpcAlive(pattern), MAX_QUEUED, Math.max(1000, options.rpcTimeoutMs * 2), ...batch.payloads],
      );
      if (Number(queued) === 0) {
        const e = new LogBusError('NO_RESPONDERS', `no live instance handles the pattern '${pattern}'`);
        for (const f of batch.fails) f(e);
      }
    } catch (e) {
      this.subscribed = undefined;
      const err = asBusError(e, `request '${pattern}'`);
      for (const f of batch.fails) f(err);
    }
  }

  close(): void {
    this.closed = true;
    this.failAll(() => new LogBusError('CLOSED', 'the connection was closed before the reply came'));
  }

  private failAll(error: () => Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const h of all) h.error(error());
  }

  private onReply(message: Buffer): void {
    let r: ReturnType<typeof decodeReply>;
    try {
      r = decodeReply(message);
    } catch (e) {
      this.ctx.logger.error(`dropped an RPC reply: ${(e as Error).message}`);
      return;
    }
    const h = this.pending.get(r.requestId);
    if (!h) return; // cancelled or timed out
    if (r.done) this.pending.delete(r.requestId);
    h.reply(r.value, r.done);
  }
}
