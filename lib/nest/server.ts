import { Logger } from '@nestjs/common';
import { Server, type CustomTransportStrategy, type MessageHandler, type WritePacket } from '@nestjs/microservices';
import { isObservable } from 'rxjs';
import { createConnection } from '../connection/factory.js';
import type { BusConnection, ConnectionStatus, ConsumeSpec, Consumer, Delivery, RpcIncoming, Subscription } from '../connection/types.js';
import { LogBusError } from '../errors.js';
import { resolveOptions, topicConfigFor, type LogBusOptions, type ResolvedOptions } from '../options.js';
import { validatePattern } from '../topic.js';
import { encodeReply, PayloadCodec, ReplyTag, serializeRpcError } from './codec.js';
import { LOGBUS_EXTRAS, LOGBUS_TRANSPORT } from './constants.js';
import { resolveConsumeOptions, validateName, withPlace } from './consume-options.js';
import { LogBusContext } from './context.js';
import type { LogBusHandlerExtras } from './decorators.js';
import { describeError, isInsideHandler, takeHandlerError } from './handler-scope.js';
import { PushLane } from './push-lane.js';

type Binding =
  | { kind: 'subscribe'; route: string; handler: MessageHandler; name: string; queue?: string }
  | { kind: 'consume'; route: string; handler: MessageHandler; name: string; spec: ConsumeSpec }
  | { kind: 'rpc'; route: string; handler: MessageHandler; name: string };

type Registration = { handler: MessageHandler; route: string; isEventHandler: boolean; extras: Record<string, unknown> };

/** Events `on()` accepts: the connection's status changes. */
export type LogBusServerEvents = Record<ConnectionStatus, () => void>;

/** Longest RPC pattern accepted (Nest allows object patterns, normalized to JSON). */
const MAX_RPC_PATTERN = 4096;

/** A subscription or consumer, usable before its promise resolves (a delivery may arrive first). */
interface Ref<T> {
  value: T | undefined;
  ready: Promise<T>;
}

function settleWith<T>(ref: Ref<T>, fn: (x: T) => void): void {
  if (ref.value !== undefined) fn(ref.value);
  // not registered yet: settle once it is (a failed registration fails listen() anyway)
  else ref.ready.then(fn).catch(() => undefined);
}

/**
 * The Nest transport strategy: `createMicroservice(AppModule, { strategy: new LogBusServer(options) })`.
 * Push handlers (@Subscribe/@EventPattern) become subscriptions, pull handlers
 * (@Consume) consumers in a group, @MessagePattern handlers RPC responders,
 * all on one BusConnection.
 */
export class LogBusServer extends Server<LogBusServerEvents, ConnectionStatus> implements CustomTransportStrategy {
  override transportId = LOGBUS_TRANSPORT;
  /** We await every handler and report its failure ourselves (ack/nack, logs). */
  override readonly propagatesEventHandlerErrors = true;
  protected override readonly logger = new Logger(LogBusServer.name);

  private readonly registrations: Registration[] = [];
  private readonly codec: PayloadCodec;
  private connection: BusConnection | undefined;
  private subscriptions: Array<Promise<Subscription>> = [];
  private consumers: Array<Promise<Consumer>> = [];
  private responders: Array<Promise<{ close(): Promise<void> }>> = [];
  /** messages being handled; close() drains them */
  private inFlight = 0;
  /** close() calls made from inside handlers: each such handler waits for close(), so the drain must not wait for it */
  private closersInside = 0;
  private wakeDrain: (() => void) | undefined;
  private accepting = false;
  private closing: Promise<void> | undefined;
  private lastStatus: ConnectionStatus | undefined;
  private readonly listeners = new Map<string, Array<() => void>>();

  /** Nest's do-nothing start hook: when still in place, handlers run without the hook machinery */
  private readonly defaultStartHook = this.onProcessingStartHook;

  constructor(private readonly options: LogBusOptions = {}) {
    super();
    this.initializeSerializer(options);
    this.initializeDeserializer(options);
    this.codec = new PayloadCodec(options?.serializer, options?.deserializer);
  }

  /**
   * Nest chains event handlers of one pattern (`handler.next`) and runs them
   * together; here each keeps its own kind (a @Subscribe and a @Consume on one
   * topic get different deliveries), so each is registered on its own.
   */
  override addHandler(pattern: unknown, callback: MessageHandler, isEventHandler = false, extras: Record<string, unknown> = {}): void {
    const route = this.normalizePattern(pattern as string);
    callback.isEventHandler = isEventHandler;
    callback.extras = extras;
    if (!isEventHandler) {
      // Nest's rule for request handlers: the last one registered for a pattern wins
      const i = this.registrations.findIndex(r => !r.isEventHandler && r.route === route);
      if (i >= 0) this.registrations.splice(i, 1);
      this.messageHandlers.set(route, callback);
    } else if (!this.messageHandlers.has(route)) {
      this.messageHandlers.set(route, callback);
    }
    this.registrations.push({ handler: callback, route, isEventHandler, extras });
  }

  async listen(callback: (...optionalParams: unknown[]) => unknown): Promise<void> {
    try {
      await this.start();
    } catch (e) {
      await this.closeAfterFailedStart();
      callback(e);
      return;
    }
    callback();
  }

  /** Stops taking messages, drains handlers in flight (up to shutdownTimeoutMs), commits, disconnects. */
  close(): Promise<void> {
    if (this.inFlight > 0 && isInsideHandler()) {
      // that handler waits for close(), so close() must not wait for it
      this.closersInside++;
      this.wakeDrain?.();
    }
    this.closing ??= this.shutdown();
    return this.closing;
  }

  on<K extends keyof LogBusServerEvents>(event: K, callback: LogBusServerEvents[K]): void {
    if (!['connected', 'disconnected', 'reconnecting'].includes(event)) {
      throw new LogBusError('INVALID_ARGUMENT', `unknown event '${String(event)}'; LogBusServer emits 'connected', 'disconnected' and 'reconnecting'`);
    }
    const list = this.listeners.get(event) ?? [];
    list.push(callback);
    this.listeners.set(event, list);
  }

  /** The BusConnection this server runs on. */
  unwrap<T = BusConnection>(): T {
    if (!this.connection) {
      throw new LogBusError('CLOSED', 'not listening: call listen() (app.listen()) before unwrap()');
    }
    return this.connection as T;
  }

  /** Seam for tests and custom drivers. */
  protected createConnection(options: ResolvedOptions): BusConnection {
    return createConnection(options, new Logger('LogBus'));
  }

  private async start(): Promise<void> {
    if (this.connection) throw new LogBusError('INVALID_ARGUMENT', 'LogBusServer is already listening');
    this.closing = undefined;
    this.closersInside = 0;
    const resolved = resolveOptions(this.options);
    const bindings = this.registrations.map(r => this.bind(r, resolved));
    const connection = this.createConnection(resolved);
    this.connection = connection;
    connection.onStatus(s => this.setStatus(s));
    await connection.connect();
    this.accepting = true;
    // registered one by one so a failure leaves a clear list of what to undo
    for (const b of bindings) {
      if (b.kind === 'subscribe') {
        const ref: Ref<Subscription> = { value: undefined, ready: undefined! };
        const lane = new PushLane();
        ref.ready = connection.subscribe({ pattern: b.route, queue: b.queue, bufferBytes: resolved.subscriberBufferBytes }, d =>
          this.onPush(ref, lane, b, d),
        );
        this.subscriptions.push(ref.ready);
        ref.value = await ref.ready;
      } else if (b.kind === 'consume') {
        const ref: Ref<Consumer> = { value: undefined, ready: undefined! };
        ref.ready = connection.consume(b.spec, d => this.onPull(ref, b, d));
        this.consumers.push(ref.ready);
        ref.value = await ref.ready.catch((e: unknown) => {
          throw e instanceof LogBusError ? new LogBusError(e.code, `${b.name}: ${e.message.slice(e.code.length + 2)}`, { cause: e }) : e;
        });
      } else {
        const ready = connection.serveRpc(b.route, req => this.onRequest(b, req));
        this.responders.push(ready);
        await ready;
      }
    }
    this.setStatus(connection.status);
  }

  /** Validates one handler against the options; every mistake fails listen() before anything connects. */
  private bind(r: Registration, resolved: ResolvedOptions): Binding {
    const extras = r.extras?.[LOGBUS_EXTRAS] as Partial<LogBusHandlerExtras> | undefined;
    if (!r.isEventHandler) {
      const name = `@MessagePattern(${JSON.stringify(r.route)})`;
      if (r.route.length === 0 || r.route.length > MAX_RPC_PATTERN) {
        throw new LogBusError('INVALID_TOPIC', `${name}: a request pattern must be 1 to ${MAX_RPC_PATTERN} characters`);
      }
      return { kind: 'rpc', route: r.route, handler: r.handler, name };
    }
    if (extras?.kind === 'consume') {
      const name = extras.handler ?? `@Consume(${JSON.stringify(r.route)})`;
      const partial = withPlace(name, () => resolveConsumeOptions(r.route, extras.options));
      const group = partial.group ?? (resolved.group === undefined ? undefined : validateName(resolved.group, 'group'));
      if (group === undefined) {
        throw new LogBusError(
          'INVALID_OPTION',
          `${name} has no consumer group for topic '${r.route}': give @Consume a { group } or LogBusServer a 'group' option`,
        );
      }
      if (!topicConfigFor(r.route, resolved.topics).durable) {
        throw new LogBusError(
          'NOT_DURABLE',
          `${name}: topic '${r.route}' is configured durable: false, so nothing is stored to consume; use @Subscribe for it`,
        );
      }
      return { kind: 'consume', route: r.route, handler: r.handler, name, spec: { ...partial, group } };
    }
    const queue = extras?.kind === 'subscribe' ? extras.queue : undefined;
    const name = extras?.handler ?? `@EventPattern(${JSON.stringify(r.route)})`;
    withPlace(name, () => {
      validatePattern(r.route);
      if (queue !== undefined) validateName(queue, 'queue');
    });
    return { kind: 'subscribe', route: r.route, handler: r.handler, name, ...(queue !== undefined && { queue }) };
  }

  private onPush(ref: Ref<Subscription>, lane: PushLane, b: Binding, d: Delivery): void {
    if (!this.accepting) {
      doneWith(ref, d);
      return;
    }
    if (lane.admit(d)) void this.handlePush(ref, lane, b, d);
  }

  /**
   * Never rejects: a push handler's failure is logged, and the delivery is
   * always done. One call runs a lane slot's deliveries one after another
   * (no new Promise chain per message).
   */
  private async handlePush(ref: Ref<Subscription>, lane: PushLane, b: Binding, first: Delivery): Promise<void> {
    for (let d: Delivery | undefined = first; d !== undefined; d = lane.next()) {
      this.begin();
      try {
        const result = await this.invoke(b.handler, d, contextOf(d));
        if (isObservable(result)) await settleResult(result);
      } catch (e) {
        this.logger.error(`${b.name} failed on '${d.topic}'${offsetText(d)}: ${describeError(e)}`);
      } finally {
        this.end();
        doneWith(ref, d);
      }
      if (!this.accepting) {
        for (const rest of lane.takeAll()) doneWith(ref, rest);
      }
    }
  }

  private onPull(ref: Ref<Consumer>, b: Binding, d: Delivery): void {
    // after close() began, the delivery is neither acked nor nacked: consumer.close() hands it back to the group
    if (!this.accepting) return;
    void this.handlePull(ref, b, d);
  }

  /** Never rejects: completion acks, failure nacks (retry after the backoff, then dead letter). */
  private async handlePull(ref: Ref<Consumer>, b: Binding, d: Delivery): Promise<void> {
    this.begin();
    const ctx = contextOf(d);
    let data: unknown;
    let failure: unknown;
    let failed = false;
    try {
      data = this.codec.decodeFrom(d.value, d.topic);
      if (data instanceof Promise) data = await data;
      const result = await this.call(b.handler, data, ctx);
      if (isObservable(result)) await settleResult(result);
    } catch (e) {
      failed = true;
      failure = e;
    }
    try {
      const consumer = ref.value;
      if (!failed) {
        if (consumer) consumer.ack(d);
        else settleWith(ref, c => c.ack(d));
      } else {
        const why = describeError(takeHandlerError(ctx, data)?.error ?? failure);
        this.logger.warn(`${b.name} failed on '${d.topic}'${offsetText(d)} (delivery ${d.deliveryCount}): ${why}`);
        settleWith(ref, c => c.nack(d, why));
      }
    } catch (e) {
      // the consumer closed under a handler that outlived the shutdown deadline: the group redelivers it
      this.logger.warn(`${b.name}: could not settle '${d.topic}'${offsetText(d)}: ${describeError(e)}`);
    } finally {
      this.end();
    }
  }

  private onRequest(b: Binding, req: RpcIncoming): void {
    let finished = false;
    const send = (bytes: Buffer, done: boolean) => {
      if (finished) return;
      finished = done;
      try {
        req.reply(bytes, done);
      } catch (e) {
        this.logger.warn(`${b.name}: could not reply: ${describeError(e)}`);
      }
    };
    if (!this.accepting) {
      send(encodeReply(ReplyTag.Error, serializeRpcError(new LogBusError('CLOSED', 'the server is shutting down'))), true);
      return;
    }
    this.begin();
    const respond = async (packet: WritePacket) => {
      if (finished) return;
      const done = packet.isDisposed === true || packet.err !== undefined;
      let bytes: Buffer;
      if (packet.err !== undefined) bytes = encodeReply(ReplyTag.Error, serializeRpcError(packet.err));
      else if (packet.response !== undefined) {
        const body = this.codec.encodeNow(packet.response, { topic: req.pattern });
        bytes = encodeReply(ReplyTag.Response, body instanceof Promise ? await body : body);
      }
      else bytes = encodeReply(ReplyTag.End);
      send(bytes, done);
      if (finished) this.end();
    };
    const reply = (packet: WritePacket) =>
      respond(packet).catch((e: unknown) => {
        this.logger.error(`${b.name}: could not encode the reply: ${describeError(e)}`);
        void respond({ err: { status: 'error', message: `the reply could not be encoded: ${describeError(e)}` }, isDisposed: true });
      });
    const ctx = new LogBusContext([req.pattern, undefined, Date.now(), undefined, {}, 1, undefined]);
    if (this.onProcessingStartHook === this.defaultStartHook && !this.onProcessingEndHook) {
      void this.answer(b.handler, req, ctx, reply);
      return;
    }
    const produce = async () => this.transformToObservable(await this.runRpcHandler(b.handler, req, ctx));
    // Nest 12's handleRequest: processing hooks, then the reply stream through send(); Nest 11 has only send()
    const started = (
      typeof this.handleRequest === 'function' ? this.handleRequest(ctx, produce, reply) : produce().then(r$ => void this.send(r$, reply))
    ) as unknown;
    Promise.resolve(started).catch((err: unknown) => reply({ err, isDisposed: true }));
  }

  /**
   * Without processing hooks: what Nest's handleRequest and send() would do,
   * minus the Observable for a plain result (one reply that ends the call,
   * as send() merges it). A stream, or the error stream of Nest's exception
   * filter, still goes through Nest's send().
   */
  private async answer(handler: MessageHandler, req: RpcIncoming, ctx: LogBusContext, reply: (packet: WritePacket) => Promise<void>): Promise<void> {
    try {
      const result = await this.runRpcHandler(handler, req, ctx);
      if (isObservable(result)) this.send(result, reply);
      else void reply({ response: result, isDisposed: true });
    } catch (err) {
      void reply({ err, isDisposed: true });
    }
  }

  /** The handler's result (awaited). Named: isInsideHandler() looks for it in the stack of a close() call. */
  private async runRpcHandler(handler: MessageHandler, req: RpcIncoming, ctx: LogBusContext): Promise<unknown> {
    let data = this.codec.decodeFrom(req.value, req.pattern);
    if (data instanceof Promise) data = await data;
    return await handler(data, ctx);
  }

  /** Counts one message in until end(), so close() can drain it. */
  private begin(): void {
    this.inFlight++;
  }

  private end(): void {
    this.inFlight--;
    this.wakeDrain?.();
  }

  /** Decodes and runs the handler; the result is the handler's (a Promise of a value or an Observable). */
  private invoke(handler: MessageHandler, d: Delivery, ctx: LogBusContext): unknown {
    const data = this.codec.decodeFrom(d.value, d.topic);
    if (data instanceof Promise) return data.then(v => this.call(handler, v, ctx));
    return this.call(handler, data, ctx);
  }

  /** The handler Nest registered, through Nest's processing hooks when any is set. */
  private call(handler: MessageHandler, data: unknown, ctx: LogBusContext): unknown {
    if (this.onProcessingStartHook === this.defaultStartHook && !this.onProcessingEndHook) return handler(data, ctx);
    return this.callWithHooks(handler, data, ctx);
  }

  private async callWithHooks(handler: MessageHandler, data: unknown, ctx: LogBusContext): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const body = async () => {
        const end = this.createProcessingEndHookRunner(ctx);
        try {
          await settleResult(await handler(data, ctx));
          resolve();
        } catch (e) {
          reject(e);
        } finally {
          end();
        }
      };
      try {
        const r = this.onProcessingStartHook(this.transportId, ctx, body) as unknown;
        if (r instanceof Promise) r.catch(reject);
      } catch (e) {
        reject(e);
      }
    });
  }

  private async shutdown(): Promise<void> {
    this.accepting = false;
    const connection = this.connection;
    if (!connection) return;
    const { consumers, subscriptions, responders } = this;
    // 1. stop taking new messages
    await Promise.allSettled(consumers.map(c => c.then(x => x.pause())));
    await Promise.allSettled([...subscriptions.map(s => s.then(x => x.unsubscribe())), ...responders.map(r => r.then(x => x.close()))]);
    // 2. drain what is in flight, up to the deadline
    const deadlineMs = resolveDeadline(this.options);
    const left = await this.drain(deadlineMs);
    if (left > 0) this.logger.warn(`close(): ${left} handler(s) still running after ${deadlineMs} ms; their messages will be delivered again`);
    // 3. commit positions (consumer.close), then 4. disconnect
    const results = await Promise.allSettled(consumers.map(c => c.then(x => x.close())));
    for (const r of results) if (r.status === 'rejected' && !(r.reason instanceof LogBusError && r.reason.code === 'CLOSED')) this.logger.error(r.reason);
    try {
      await connection.close();
    } finally {
      this.connection = undefined;
      this.subscriptions = [];
      this.consumers = [];
      this.responders = [];
      this.setStatus('disconnected');
    }
  }

  /** Waits until every in-flight handler (except those waiting on close() itself) settles; returns how many are left. */
  private async drain(deadlineMs: number): Promise<number> {
    // handlers waiting for close() itself never settle before it: count them out
    const waiting = () => Math.max(0, this.inFlight - this.closersInside);
    if (waiting() === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const deadline = new Promise<void>(r => {
      timer = setTimeout(() => {
        timedOut = true;
        r();
      }, deadlineMs);
    });
    try {
      while (!timedOut && waiting() > 0) {
        const wake = new Promise<void>(r => (this.wakeDrain = r));
        await Promise.race([wake, deadline]);
      }
    } finally {
      clearTimeout(timer);
      this.wakeDrain = undefined;
    }
    return waiting();
  }

  private async closeAfterFailedStart(): Promise<void> {
    this.accepting = false;
    const connection = this.connection;
    if (!connection) return;
    await Promise.allSettled(this.consumers.map(c => c.then(x => x.close())));
    await Promise.allSettled(this.subscriptions.map(s => s.then(x => x.unsubscribe())));
    await Promise.allSettled(this.responders.map(r => r.then(x => x.close())));
    await connection.close().catch(e => this.logger.error(e));
    this.connection = undefined;
    this.subscriptions = [];
    this.consumers = [];
    this.responders = [];
  }

  private setStatus(status: ConnectionStatus): void {
    if (status === this.lastStatus) return;
    this.lastStatus = status;
    this._status$.next(status);
    for (const cb of this.listeners.get(status) ?? []) {
      try {
        cb();
      } catch (e) {
        this.logger.error(e);
      }
    }
  }
}

/** Push: the handler is finished with the delivery (frees its bytes in the subscriber's buffer). */
function doneWith(ref: Ref<Subscription>, d: Delivery): void {
  const s = ref.value;
  if (s) s.done(d);
  else settleWith(ref, x => x.done(d));
}

function contextOf(d: Delivery): LogBusContext {
  return new LogBusContext(undefined, d);
}

function offsetText(d: Delivery): string {
  return d.offset === undefined ? '' : ` at offset ${d.offset}`;
}

function resolveDeadline(options: LogBusOptions): number {
  try {
    return resolveOptions(options).shutdownTimeoutMs;
  } catch {
    return 10_000;
  }
}

/** A handler's Promise is already awaited; an Observable result must complete (or error) too. */
function settleResult(result: unknown): Promise<void> | void {
  if (!isObservable(result)) return;
  return new Promise<void>((resolve, reject) => {
    result.subscribe({ error: reject, complete: resolve });
  });
}
