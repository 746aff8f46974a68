import { LogBusError } from '../errors.js';
import type { RpcCall, RpcIncoming, RpcReplyHandler } from '../connection/types.js';

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
  readonly pending = new Set<number>();
  constructor(
    readonly pattern: string,
    readonly owner: RpcOwner,
    readonly onRequest: (req: RpcIncoming) => void,
  ) {}
}

interface Pending {
  readonly id: number;
  readonly caller: RpcOwner;
  readonly handler: RpcReplyHandler;
  readonly responder: Responder;
}

class Incoming implements RpcIncoming {
  constructor(
    private readonly router: RpcRouter,
    private readonly id: number,
    readonly pattern: string,
    readonly value: Buffer,
  ) {}
  reply(value: Buffer, done: boolean): void {
    this.router.reply(this.id, value, done);
  }
}

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
  private readonly pending = new Map<number, Pending>();
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
    for (const id of r.pending) {
      const p = this.take(id);
      if (p) {
        const err = new LogBusError('CONNECTION_LOST', `the handler of '${r.pattern}' went away before replying`);
        safely(() => p.handler.error(err), e => this.onHandlerError(`RPC error callback threw: ${(e as Error)?.message ?? e}`));
      }
    }
    r.pending.clear();
  }

  request(caller: RpcOwner, pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    const fail = (err: LogBusError): RpcCall => {
      // Never call back before request() has returned.
      queueMicrotask(() => safely(() => handler.error(err), e => this.onHandlerError(`RPC error callback threw: ${(e as Error)?.message ?? e}`)));
      return { cancel: () => undefined };
    };
    try {
      RpcRouter.validatePattern(pattern);
      if (!Buffer.isBuffer(value)) throw new LogBusError('INVALID_ARGUMENT', 'an RPC request value must be a Buffer');
    } catch (e) {
      return fail(e as LogBusError);
    }
    if (caller.pending >= this.maxPendingPerSession) {
      return fail(
        new LogBusError('INVALID_ARGUMENT', `${this.maxPendingPerSession} requests are already waiting for replies on this connection; wait for some to finish`),
      );
    }
    const slot = this.responders.get(pattern);
    if (!slot || slot.list.length === 0) {
      return fail(new LogBusError('NO_RESPONDERS', `no live handler serves '${pattern.length > 100 ? pattern.slice(0, 100) + '…' : pattern}'`));
    }
    const responder = slot.list[slot.next++ % slot.list.length];
    if (slot.next >= slot.list.length) slot.next = 0;
    const id = ++this.seq;
    const p: Pending = { id, caller, handler, responder };
    this.pending.set(id, p);
    caller.pending++;
    responder.pending.add(id);
    const incoming = new Incoming(this, id, pattern, value);
    queueMicrotask(() => {
      if (!this.pending.has(id) || responder.closed) return;
      safely(
        () => responder.onRequest(incoming),
        e => {
          const err = new LogBusError('CONNECTION_LOST', `the handler of '${pattern}' failed to take the request: ${(e as Error)?.message ?? e}`);
          const gone = this.take(id);
          if (gone) safely(() => gone.handler.error(err), () => undefined);
        },
      );
    });
    return { cancel: () => void this.take(id) };
  }

  reply(id: number, value: Buffer, done: boolean): void {
    const p = done ? this.take(id) : this.pending.get(id);
    if (!p) return; // cancelled, timed out at the caller, or caller gone
    safely(
      () => p.handler.reply(value, done),
      e => this.onHandlerError(`RPC reply callback threw: ${(e as Error)?.message ?? e}`),
    );
  }

  /** A calling session closes: its pending requests are forgotten; late replies are dropped. */
  dropCaller(caller: RpcOwner): void {
    if (caller.pending === 0) return;
    for (const p of this.pending.values()) if (p.caller === caller) this.take(p.id);
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
