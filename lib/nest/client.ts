import { Logger } from '@nestjs/common';
import { ClientProxy, RpcException, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { Observable, type Subscriber } from 'rxjs';
import { createConnection } from '../connection/factory.js';
import type {
  BusConnection,
  BusStats,
  ConnectionStatus,
  ConsumeFrom,
  GroupInfo,
  OutgoingMessage,
  ProduceResult,
  RpcCall,
  TopicInfo,
} from '../connection/types.js';
import { LogBusError } from '../errors.js';
import { LIMITS, positiveInt, resolveOptions, resolveTopicConfig, type LogBusOptions, type ResolvedOptions, type TopicConfig } from '../options.js';
import { validateTopicName } from '../topic.js';
import { encodeJson, PayloadCodec, ReplyTag } from './codec.js';
import { validateName } from './consume-options.js';
import { IdTable } from '../id-table.js';
import { RpcDeadlines, type RpcDeadline } from './rpc-deadlines.js';

export interface ProduceOptions {
  key?: string;
  headers?: Record<string, string>;
}

export interface BatchMessage<T = unknown> extends ProduceOptions {
  data: T;
}

export interface ReadOptions {
  /** first offset to read, or 'earliest' (default) */
  from?: number | 'earliest';
  /** at most this many messages (default 100, at most LIMITS.maxBatchMessages) */
  max?: number;
}

export interface Message<T = unknown> {
  offset: number;
  timestamp: number;
  key: string | undefined;
  headers: Record<string, string>;
  data: T;
}

export type LogBusClientEvents = Record<ConnectionStatus, () => void>;

interface PendingEmit {
  message: OutgoingMessage;
  resolve(result: ProduceResult): void;
  reject(err: unknown): void;
}

/**
 * What emit() returns, and its place in the batch at once. Hot, as Nest's
 * stream is: the publish starts whether or not anyone subscribes. A
 * subscriber gets the result and completion; one that subscribes after
 * that gets what a late subscriber of Nest's stream gets (just completion,
 * or the error). Lighter than a Subject per event: one subscriber is kept
 * without an array, and nothing else is allocated.
 */
class EmitResult<T> extends Observable<T> implements PendingEmit {
  message: OutgoingMessage = EMPTY_MESSAGE;
  private state = EmitState.Pending;
  private failure: unknown;
  private first: Subscriber<T> | undefined;
  private more: Subscriber<T>[] | undefined;

  constructor() {
    super(attachToEmit as (this: Observable<T>, s: Subscriber<T>) => void);
  }

  attach(s: Subscriber<T>): void {
    if (this.state === EmitState.Done) s.complete();
    else if (this.state === EmitState.Failed) s.error(this.failure);
    else if (this.first === undefined) this.first = s;
    else (this.more ??= []).push(s);
  }

  resolve(result: ProduceResult): void {
    this.settle(EmitState.Done, result);
  }

  reject(err: unknown): void {
    this.failure = err;
    this.settle(EmitState.Failed, undefined);
  }

  private settle(state: EmitState, value: unknown): void {
    if (this.state !== EmitState.Pending) return;
    this.state = state;
    const { first, more } = this;
    this.first = this.more = undefined;
    if (first) deliverTo(first, state, value, this.failure);
    if (more) for (const s of more) deliverTo(s, state, value, this.failure);
  }
}

const enum EmitState {
  Pending,
  Done,
  Failed,
}

const EMPTY_MESSAGE: OutgoingMessage = { value: Buffer.alloc(0) };

/** Observable's subscribe function for EmitResult: shared, `this` is the instance. */
function attachToEmit<T>(this: EmitResult<T>, s: Subscriber<T>): void {
  this.attach(s);
}

function deliverTo<T>(s: Subscriber<T>, state: EmitState, value: unknown, failure: unknown): void {
  if (state === EmitState.Failed) s.error(failure);
  else {
    s.next(value as T);
    s.complete();
  }
}

/** The bus message of an event with the default JSON codec; throws INVALID_TOPIC. */
function eventMessage(topic: string, packet: ReadPacket): OutgoingMessage {
  validateTopicName(topic);
  const message: OutgoingMessage = { value: encodeJson(packet.data) };
  // Nest 12 packet metadata (setOnDispatchHook) travels as message headers
  if (packet.metadata && Object.keys(packet.metadata).length > 0) message.headers = { ...packet.metadata };
  return message;
}

const DEFAULT_READ_MAX = 100;
/** Emits coalesced into one produce at most (the broker's own coalescing bounds). */
const EMIT_BATCH_MESSAGES = 1000;
const EMIT_BATCH_BYTES = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
const MAX_KEY_CHARS = 1024;
/** RPCs waiting for replies on one client; past it send() fails at once instead of growing without bound. */
const MAX_PENDING_RPCS = 100_000;

function checkProduceOptions(o: ProduceOptions | undefined, at: string): { key?: string; headers?: Record<string, string> } {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object') throw new LogBusError('INVALID_ARGUMENT', `${at}: options must be an object { key?, headers? }`);
  if (o.key !== undefined && (typeof o.key !== 'string' || o.key.length > MAX_KEY_CHARS)) {
    throw new LogBusError('INVALID_ARGUMENT', `${at}: key must be a string of at most ${MAX_KEY_CHARS} characters`);
  }
  if (o.headers !== undefined) {
    if (o.headers === null || typeof o.headers !== 'object' || Array.isArray(o.headers)) {
      throw new LogBusError('INVALID_ARGUMENT', `${at}: headers must be an object of strings`);
    }
    for (const [k, v] of Object.entries(o.headers)) {
      if (typeof v !== 'string') throw new LogBusError('INVALID_ARGUMENT', `${at}: header '${k}' must be a string`);
    }
  }
  return { ...(o.key !== undefined && { key: o.key }), ...(o.headers !== undefined && { headers: o.headers }) };
}

/**
 * Nest's ClientProxy for logbus: `emit` publishes, `send` is request/response,
 * plus the log's own calls (produce, read, admin). Connects on first use.
 * (Its status type stays Nest's default `string`, so the class fits
 * ClientsModule's `customClass`; the values are ConnectionStatus.)
 */
export class LogBusClient extends ClientProxy<LogBusClientEvents> {
  private readonly codec: PayloadCodec;
  private connection: BusConnection | undefined;
  private resolved: ResolvedOptions | undefined;
  private connecting: Promise<BusConnection> | undefined;
  private closing: Promise<void> | undefined;
  private lastStatus: ConnectionStatus | undefined;
  private closed = false;
  /** publishes not yet taken by the broker: close() waits for them ("flushes what was accepted") */
  private readonly publishing = new Set<Promise<unknown>>();
  /** cancels for RPCs in flight, so close() can end them; an IdTable by a local sequence, not a Set (see IdTable) */
  private readonly pending = new IdTable<(err: Error) => void>();
  private pendingSeq = 0;
  /** their timeouts, under one timer */
  private readonly deadlines = new RpcDeadlines();
  private readonly listeners: Array<[ConnectionStatus, () => void]> = [];
  /** emits of this tick, per topic, not yet handed to the connection */
  private emitBatch: Map<string, PendingEmit[]> | undefined;

  constructor(private readonly options: LogBusOptions = {}) {
    super();
    this.initializeSerializer(options);
    this.initializeDeserializer(options);
    this.codec = new PayloadCodec(options?.serializer, options?.deserializer);
  }

  /** Idempotent: every caller shares one connection attempt; a failed attempt may be retried. */
  connect(): Promise<BusConnection> {
    if (this.closed) return Promise.reject(closedError());
    this.connecting ??= this.open().catch((e: unknown) => {
      this.connecting = undefined;
      throw e;
    });
    return this.connecting;
  }

  /** Flushes what was accepted (every produce resolves only once taken), then disconnects. Later calls fail with CLOSED. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      for (const cancel of this.pending.valuesList()) cancel(closedError());
      await Promise.allSettled([...this.publishing]);
      const connection = await this.connecting?.catch(() => undefined);
      await connection?.close();
      this.connection = undefined;
      this.setStatus('disconnected');
    })();
    return this.closing;
  }

  override on<K extends keyof LogBusClientEvents>(event: K, callback: LogBusClientEvents[K]): void {
    if (!['connected', 'disconnected', 'reconnecting'].includes(event)) {
      throw new LogBusError('INVALID_ARGUMENT', `unknown event '${String(event)}'; LogBusClient emits 'connected', 'disconnected' and 'reconnecting'`);
    }
    this.listeners.push([event, callback]);
  }

  /** The BusConnection underneath. */
  unwrap<T = BusConnection>(): T {
    if (!this.connection) throw new LogBusError('CLOSED', 'not connected: call connect() first');
    return this.connection as T;
  }

  /** Publishes one message; `offset` is undefined on non-durable topics. */
  produce<T = unknown>(topic: string, data: T, options?: ProduceOptions): Promise<ProduceResult> {
    return this.track(this.produceOne(topic, data, options));
  }

  private async produceOne(topic: string, data: unknown, options?: ProduceOptions): Promise<ProduceResult> {
    validateTopicName(topic);
    const extra = checkProduceOptions(options, 'produce');
    const connection = await this.connect();
    const value = await this.codec.encode(data, { topic });
    const [result] = await connection.produce(topic, [{ value, ...extra }]);
    return result;
  }

  /** One round trip, accepted whole or rejected whole; results in order. */
  produceBatch<T = unknown>(topic: string, messages: BatchMessage<T>[]): Promise<ProduceResult[]> {
    return this.track(this.produceMany(topic, messages));
  }

  private async produceMany(topic: string, messages: BatchMessage[]): Promise<ProduceResult[]> {
    validateTopicName(topic);
    if (!Array.isArray(messages)) throw new LogBusError('INVALID_ARGUMENT', 'produceBatch: messages must be an array of { data, key?, headers? }');
    if (messages.length > LIMITS.maxBatchMessages) {
      throw new LogBusError('INVALID_ARGUMENT', `produceBatch: ${messages.length} messages; at most ${LIMITS.maxBatchMessages} per batch`);
    }
    // every message is checked before anything is encoded or sent; value is filled in below
    const out: OutgoingMessage[] = new Array(messages.length);
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      if (m === null || typeof m !== 'object') throw new LogBusError('INVALID_ARGUMENT', `produceBatch: messages[${i}] must be { data, key?, headers? }`);
      out[i] =
        m.key === undefined && m.headers === undefined
          ? { value: EMPTY }
          : { value: EMPTY, ...checkProduceOptions({ key: m.key, headers: m.headers }, `produceBatch: messages[${i}]`) };
    }
    const connection = await this.connect();
    if (messages.length === 0) return [];
    const place = { topic };
    for (let i = 0; i < out.length; i++) {
      const v = this.codec.encodeNow(messages[i].data, place);
      out[i].value = v instanceof Promise ? await v : v;
    }
    return connection.produce(topic, out);
  }

  /** Stored messages, oldest first, outside any group (tools, tests, replay). */
  async read<T = unknown>(topic: string, options: ReadOptions = {}): Promise<Message<T>[]> {
    validateTopicName(topic);
    const from = options.from ?? 'earliest';
    if (from !== 'earliest') positiveInt(from, 'read: from', Number.MAX_SAFE_INTEGER, 0);
    const max = options.max === undefined ? DEFAULT_READ_MAX : positiveInt(options.max, 'read: max', LIMITS.maxBatchMessages);
    const connection = await this.connect();
    const records = await connection.read(topic, from, max);
    const out: Message<T>[] = [];
    for (const r of records) {
      out.push({ offset: r.offset, timestamp: r.timestamp, key: r.key, headers: r.headers, data: (await this.codec.decode(r.value, { topic })) as T });
    }
    return out;
  }

  async createTopic(name: string, config: TopicConfig = {}): Promise<void> {
    validateTopicName(name);
    resolveTopicConfig(name, config);
    await (await this.connect()).createTopic(name, config);
  }

  async topics(): Promise<TopicInfo[]> {
    return (await this.connect()).topics();
  }

  async groups(topic: string): Promise<GroupInfo[]> {
    validateTopicName(topic);
    return (await this.connect()).groups(topic);
  }

  async resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void> {
    validateTopicName(topic);
    validateName(group, 'group');
    const ok =
      to === 'earliest' ||
      to === 'latest' ||
      (to !== null && typeof to === 'object' && (Number.isInteger((to as { offset?: number }).offset) || Number.isInteger((to as { timestamp?: number }).timestamp)));
    if (!ok) throw new LogBusError('INVALID_ARGUMENT', `resetGroup: 'to' must be 'earliest', 'latest', { offset } or { timestamp }`);
    await (await this.connect()).resetGroup(topic, group, to);
  }

  async stats(): Promise<BusStats> {
    return (await this.connect()).stats();
  }

  /** Seam for tests and custom drivers. */
  protected createConnection(options: ResolvedOptions): BusConnection {
    return createConnection(options, new Logger('LogBus'));
  }

  private async open(): Promise<BusConnection> {
    this.resolved ??= resolveOptions(this.options);
    const connection = this.createConnection(this.resolved);
    connection.onStatus(s => this.setStatus(s));
    try {
      await connection.connect();
    } catch (e) {
      await connection.close().catch(() => undefined);
      throw e;
    }
    // close() during this connect waits for it and then closes the connection (after the publishes it accepted)
    this.connection = connection;
    this.setStatus(connection.status);
    return connection;
  }

  /**
   * Nest's send() waits for connect() (an async function) and then publishes
   * through mergeMap, on every call. Once connected this publishes straight
   * from the subscription: still cold (each subscription is one request,
   * unsubscribing cancels it), through Nest's createObserver and publish().
   */
  override send<TResult = unknown, TInput = unknown>(pattern: unknown, data: TInput): Observable<TResult> {
    if (this.connection === undefined || this.closed || pattern === null || pattern === undefined || data === null || data === undefined) {
      return super.send<TResult, TInput>(pattern, data);
    }
    return new Observable<TResult>(observer => {
      if (this.connection === undefined || this.closed) return super.send<TResult, TInput>(pattern, data).subscribe(observer);
      return this.publish(this.createPacket(pattern, data), this.createObserver(observer));
    });
  }

  /**
   * Nest's emit() runs connect() and then dispatchEvent() through defer,
   * mergeMap and a connectable Subject, for every event. Once connected this
   * does the same with one EmitResult, which behaves as that stream does
   * (see EmitResult).
   */
  override emit<TResult = ProduceResult, TInput = unknown>(pattern: unknown, data: TInput): Observable<TResult> {
    if (this.connection === undefined || this.closed || pattern === null || pattern === undefined || data === null || data === undefined) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    const result = new EmitResult<TResult>();
    try {
      const packet = this.createPacket(pattern, data);
      // (the dispatch hook inside createPacket may have closed the client)
      if (this.codec.hasSerializer || !this.connection || this.closed) {
        this.dispatchEvent(packet).then(
          r => result.resolve(r),
          (e: unknown) => result.reject(e),
        );
      } else {
        // no Promise and no closures per event: the batch settles it
        const topic = this.normalizePattern(packet.pattern);
        result.message = eventMessage(topic, packet);
        this.queueEmit(topic, result);
      }
    } catch (e) {
      // after return, as Nest's stream errs: the caller has subscribed by then
      void Promise.resolve().then(() => result.reject(e));
    }
    return result;
  }

  /**
   * emit(): resolves once the broker has taken the message (durably on
   * durable topics). Emits of one tick to one topic go out as one produce
   * (one batch, one frame on the wire); each gets its own result.
   */
  protected dispatchEvent<T = ProduceResult>(packet: ReadPacket): Promise<T> {
    if (!this.connection || this.closed || this.codec.hasSerializer) return this.track(this.publishEvent(packet)) as Promise<T>;
    try {
      const topic = this.normalizePattern(packet.pattern);
      const message = eventMessage(topic, packet);
      return new Promise<T>((resolve, reject) => this.queueEmit(topic, { message, resolve: resolve as (r: ProduceResult) => void, reject }));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private queueEmit(topic: string, emit: PendingEmit): void {
    let batch = this.emitBatch;
    if (!batch) {
      batch = this.emitBatch = new Map();
      // tracked at once: close() in this same tick still flushes these emits
      this.track(Promise.resolve().then(() => this.flushEmits()));
    }
    const list = batch.get(topic);
    if (list) list.push(emit);
    else batch.set(topic, [emit]);
  }

  private flushEmits(): Promise<unknown> {
    const batch = this.emitBatch;
    this.emitBatch = undefined;
    const sends: Promise<void>[] = [];
    if (!batch) return Promise.resolve();
    for (const [topic, list] of batch) {
      // bounded batches, like the broker's own coalescing
      let start = 0;
      let bytes = 0;
      for (let i = 0; i < list.length; i++) {
        bytes += list[i].message.value.length;
        if (i + 1 === list.length || i + 1 - start >= EMIT_BATCH_MESSAGES || bytes >= EMIT_BATCH_BYTES) {
          sends.push(this.sendEmits(topic, start === 0 && i + 1 === list.length ? list : list.slice(start, i + 1)));
          start = i + 1;
          bytes = 0;
        }
      }
    }
    return Promise.all(sends);
  }

  /** One produce for these emits; if it is refused for a message's content, each is tried alone so only the bad one fails. */
  private sendEmits(topic: string, list: PendingEmit[]): Promise<void> {
    const connection = this.connection;
    if (!connection) {
      for (const e of list) e.reject(closedError());
      return Promise.resolve();
    }
    const messages: OutgoingMessage[] = new Array(list.length);
    for (let i = 0; i < list.length; i++) messages[i] = list[i].message;
    return connection.produce(topic, messages).then(
      results => {
        for (let i = 0; i < list.length; i++) list[i].resolve(results[i]);
      },
      (err: unknown) => {
        if (list.length > 1 && err instanceof LogBusError && (err.code === 'MESSAGE_TOO_LARGE' || err.code === 'INVALID_ARGUMENT')) {
          // the batch was refused whole (nothing stored), so trying each alone cannot duplicate
          return Promise.all(list.map(e => this.sendEmits(topic, [e]))).then(() => undefined);
        }
        for (const e of list) e.reject(err);
      },
    );
  }

  private async publishEvent(packet: ReadPacket): Promise<ProduceResult> {
    const topic = this.normalizePattern(packet.pattern);
    validateTopicName(topic);
    const connection = await this.connect();
    const value = await this.codec.encode(packet.data, { topic });
    // Nest 12 packet metadata (setOnDispatchHook) travels as message headers
    const headers = packet.metadata && Object.keys(packet.metadata).length > 0 ? { headers: { ...packet.metadata } } : {};
    const [result] = await connection.produce(topic, [{ value, ...headers }]);
    return result;
  }

  /** send(): one request to one live handler instance; NO_RESPONDERS, TIMEOUT or the handler's error end it. */
  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const pattern = this.normalizePattern(packet.pattern);
    let call: RpcCall | undefined;
    let finished = false;
    let deadline: RpcDeadline | undefined;
    const key = ++this.pendingSeq;
    const finish = () => {
      finished = true;
      if (deadline) this.deadlines.cancel(deadline);
      this.pending.delete(key);
    };
    const fail = (err: Error) => {
      if (finished) return;
      call?.cancel();
      finish();
      callback({ err });
    };
    // replies go out in arrival order even when a user deserializer is async
    let chain: Promise<void> | undefined;
    const deliver = (packet: WritePacket | Promise<WritePacket>) => {
      if (!chain && !(packet instanceof Promise)) {
        callback(packet);
        return;
      }
      chain = (chain ?? Promise.resolve()).then(
        () => packet,
      ).then(
        p => callback(p),
        (e: unknown) => callback({ err: e instanceof Error ? e : new Error(String(e)) }),
      );
    };
    if (this.pending.size >= MAX_PENDING_RPCS) {
      callback({ err: new LogBusError('INVALID_ARGUMENT', `${MAX_PENDING_RPCS} requests already wait for replies on this client`) });
      return () => undefined;
    }
    this.pending.set(key, fail);
    const timeoutMs = this.resolved?.rpcTimeoutMs ?? 30_000;
    deadline = this.deadlines.add(timeoutMs, () => fail(new LogBusError('TIMEOUT', `no reply to '${pattern}' within ${timeoutMs} ms`)));
    const connection = this.connection;
    if (!connection) {
      fail(closedError());
      return () => undefined;
    }
    const start = (value: Buffer) => {
      if (finished) return;
      call = connection.request(pattern, value, {
        reply: (bytes, done) => {
          if (finished) return;
          if (done || bytes[0] === ReplyTag.Error) finish();
          this.onReply(pattern, bytes, done, deliver);
        },
        error: err => fail(err),
      });
    };
    const asError = (e: unknown) => fail(e instanceof Error ? e : new Error(String(e)));
    try {
      const value = this.codec.encodeNow(packet.data, { topic: pattern });
      if (value instanceof Promise) value.then(start).catch(asError);
      else start(value);
    } catch (e) {
      asError(e);
    }
    return () => {
      if (finished) return;
      call?.cancel();
      finish();
    };
  }

  /** Turns one reply frame into Nest's WritePacket; `deliver` keeps a stream's replies in order. */
  private onReply(pattern: string, bytes: Buffer, done: boolean, deliver: (packet: WritePacket | Promise<WritePacket>) => void): void {
    const tag = bytes[0];
    const body = bytes.subarray(1);
    if (tag === ReplyTag.Error) {
      let err: unknown;
      try {
        err = JSON.parse(body.toString('utf8'));
      } catch {
        err = { status: 'error', message: body.toString('utf8') };
      }
      // as Nest's filter shaped it ({ status, message } or the RpcException's object), carried by an RpcException
      const ex = new RpcException(err as object);
      if (err !== null && typeof err === 'object') Object.assign(ex, err);
      deliver({ err: ex });
      return;
    }
    if (tag === ReplyTag.End) {
      deliver({ response: undefined, isDisposed: done });
      return;
    }
    if (tag !== ReplyTag.Response) {
      deliver({ err: new LogBusError('PROTOCOL', `reply to '${pattern}' has an unknown tag ${tag}`) });
      return;
    }
    const response = this.codec.decode(body, { topic: pattern });
    deliver(response instanceof Promise ? response.then(r => ({ response: r, isDisposed: done })) : { response, isDisposed: done });
  }

  private track<T>(p: Promise<T>): Promise<T> {
    // a publish started before close() runs to the end; later ones fail with CLOSED in connect()
    this.publishing.add(p);
    const forget = () => this.publishing.delete(p);
    p.then(forget, forget);
    return p;
  }

  private setStatus(status: ConnectionStatus): void {
    if (status === this.lastStatus) return;
    this.lastStatus = status;
    this._status$.next(status);
    for (const [event, cb] of this.listeners) if (event === status) cb();
  }
}

function closedError(): LogBusError {
  return new LogBusError('CLOSED', 'the LogBusClient is closed');
}
