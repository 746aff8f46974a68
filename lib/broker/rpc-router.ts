import { LogBusError } from '../errors.js';
import type { RpcCall, RpcIncoming, RpcReplyHandler } from '../connection/types.js';
import { IdTable } from '../id-table.js';

/** Longest RPC pattern (Nest turns object patterns into JSON strings, so these are not topic names). */
const MAX_PATTERN_LENGTH = 4096;
/** Requests awaiting replies per calling session. */
export const MAX_PENDING_PER_SESSION = 100_000;
/** Registered RPC handlers per broker. */
export const MAX_RESPONDERS = 100_000;

/** Who owns RPC resources: one per session, so its close() can drop them. */
export interface RpcOwner {
  pending: number;
}

export class Responder {
  closed = false;
  /** Its requests not yet answered (per request: no Map, see IdTable). */
  readonly pending = new IdTable<Pending>(8);
  constructor(
    readonly pattern: string,
    readonly owner: RpcOwner,
    readonly onRequest: (req: RpcIncoming) => void,
  ) {}
}

/**
 * One request in flight: what the responder sees (RpcIncoming), what the
 * caller holds (RpcCall) and the router's record, in one object.
 */
class Pending implements RpcIncoming, RpcCall {
  constructor(
    private readonly router: RpcRouter,
    readonly id: number,
    readonly caller: RpcOwner,
    readonly handler: RpcReplyHandler,
    readonly responder: Responder,
    readonly pattern: string,
    readonly value: Buffer,
  ) {}

  reply(value: Buffer, done: boolean): void {
    this.router.reply(this.id, value, done);
  }

  cancel(): void {
    this.router.cancel(this.id);
  }
}

const NOTHING_TO_CANCEL: RpcCall = { cancel: () => undefined };

function safely(fn: () => void, onError: (e: unknown) => void): void {
  try {
    fn();
  } catch (e) {
    onError(e);
  }
}

/**
 * Request/response routing: each request to one live responder of its exact
 * pattern (round robin), replies matched back by an internal id, a stream of
 * replies until done.
 */
export class RpcRouter {
  private readonly responders = new Map<string, { list: Responder[]; next: number }>();
  private readonly pending = new IdTable<Pending>();
  private seq = 0;
  private responderCount = 0;

  constructor(
    private readonly onHandlerError: (message: string) => void,
    private readonly maxPendingPerSession = MAX_PENDING_PER_SESSION,
  ) {}

  static validatePattern(pattern: unknown): asserts pattern is string {
    if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > MAX_PATTERN_LENGTH) {
      throw new LogBusError('INVALID_ARGUMENT', `RPC pattern must be a string of 1 to ${MAX_PATTERN_LENGTH} characters`);
    }
  }

  serve(owner: RpcOwner, pattern: string, onRequest: (req: RpcIncoming) => void): Responder {
    RpcRouter.validatePattern(pattern);
    if (typeof onRequest !== 'function') throw new LogBusError('INVALID_ARGUMENT', 'serveRpc needs a request callback');
    if (this.responderCount >= MAX_RESPONDERS) throw new LogBusError('INVALID_ARGUMENT', `too many RPC handlers (limit ${MAX_RESPONDERS})`);
    const r = new Responder(pattern, owner, onRequest);
    this.responderCount++;
    let slot = this.responders.get(pattern);
    if (!slot) {
      slot = { list: [], next: 0 };
      this.responders.set(pattern, slot);
    }
    slot.list.push(r);
    return r;
  }

  /** The responder goes away: its unanswered requests fail with CONNECTION_LOST. */
  unserve(r: Responder): void {
    if (r.closed) return;
    r.closed = true;
    this.responderCount--;
    const slot = this.responders.get(r.pattern);
    if (slot) {
      const i = slot.list.indexOf(r);
      if (i >= 0) slot.list.splice(i, 1);
      if (slot.list.length === 0) this.responders.delete(r.pattern);
    }
    for (const waiting of r.pending.valuesList()) {
      const p = this.take(waiting.id);
      if (p) {
        const err = new LogBusError('CONNECTION_LOST', `the handler of '${r.pattern}' went away before replying`);
        safely(() => p.handler.error(err), e => this.onHandlerError(`RPC error callback threw: ${(e as Error)?.message ?? e}`));
      }
    }
    r.pending.clear();
  }

  request(caller: RpcOwner, pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    try {
      RpcRouter.validatePattern(pattern);
      if (!Buffer.isBuffer(value)) throw new LogBusError('INVALID_ARGUMENT', 'an RPC request value must be a Buffer');
    } catch (e) {
      return this.failSoon(handler, e as LogBusError);
    }
    if (caller.pending >= this.maxPendingPerSession) {
      return this.failSoon(
        handler,
        new LogBusError('INVALID_ARGUMENT', `${this.maxPendingPerSession} requests are already waiting for replies on this connection; wait for some to finish`),
      );
    }
    const slot = this.responders.get(pattern);
    if (!slot || slot.list.length === 0) {
      return this.failSoon(handler, new LogBusError('NO_RESPONDERS', `no live handler serves '${pattern.length > 100 ? pattern.slice(0, 100) + '…' : pattern}'`));
    }
    const responder = slot.list[slot.next++ % slot.list.length];
    if (slot.next >= slot.list.length) slot.next = 0;
    const id = ++this.seq;
    const p = new Pending(this, id, caller, handler, responder, pattern, value);
    this.pending.set(id, p);
    caller.pending++;
    responder.pending.set(id, p);
    // Handed over after request() has returned; one microtask for all requests of this job.
    if (this.toHandOver.push(p) === 1) queueMicrotask(this.handOver);
    return p;
  }

  /** Requests made in this job, waiting for handOver. */
  private toHandOver: Pending[] = [];

  private readonly handOver = (): void => {
    const batch = this.toHandOver;
    this.toHandOver = [];
    for (const p of batch) {
      if (!this.pending.has(p.id) || p.responder.closed) continue;
      try {
        p.responder.onRequest(p);
      } catch (e) {
        const err = new LogBusError('CONNECTION_LOST', `the handler of '${p.pattern}' failed to take the request: ${(e as Error)?.message ?? e}`);
        const gone = this.take(p.id);
        if (gone) safely(() => gone.handler.error(err), () => undefined);
      }
    }
  };

  /** A request that fails before reaching a responder: never call back before request() has returned. */
  private failSoon(handler: RpcReplyHandler, err: LogBusError): RpcCall {
    queueMicrotask(() => safely(() => handler.error(err), e => this.onHandlerError(`RPC error callback threw: ${(e as Error)?.message ?? e}`)));
    return NOTHING_TO_CANCEL;
  }

  reply(id: number, value: Buffer, done: boolean): void {
    const p = done ? this.take(id) : this.pending.get(id);
    if (!p) return; // cancelled, timed out at the caller, or caller gone
    try {
      p.handler.reply(value, done);
    } catch (e) {
      this.onHandlerError(`RPC reply callback threw: ${(e as Error)?.message ?? e}`);
    }
  }

  /** The caller gives up (timeout, unsubscribe): a late reply is dropped. */
  cancel(id: number): void {
    this.take(id);
  }

  /** A calling session closes: its pending requests are forgotten; late replies are dropped. */
  dropCaller(caller: RpcOwner): void {
    if (caller.pending === 0) return;
    for (const p of this.pending.valuesList()) if (p.caller === caller) this.take(p.id);
  }

  private take(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    p.caller.pending--;
    p.responder.pending.delete(id);
    return p;
  }
}
