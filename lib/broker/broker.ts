import { LogBusError } from '../errors.js';
import {
  NO_HEADERS,
  type BusStats,
  type ConsumeFrom,
  type ConsumeSpec,
  type Consumer,
  type Delivery,
  type GroupInfo,
  type OutgoingMessage,
  type ProduceResult,
  type ReadMessage,
  type RpcCall,
  type RpcIncoming,
  type RpcReplyHandler,
  type SubscribeSpec,
  type Subscription,
  type TopicInfo,
} from '../connection/types.js';
import { InProcessConnection } from '../connection/in-process.js';
import { DEFAULTS, LIMITS, badOption, resolveOptions, type FsyncMode, type TopicConfig } from '../options.js';
import type { AppendRecord, AppendResult, LogRecord, LogStore, TopicLog } from '../store/types.js';
import { validateTopicName } from '../topic.js';
import type { GroupMember } from './consumer-group.js';
import { Dispatcher, type OutMessage, type PushSubscriber } from './dispatcher.js';
import { validateConsumeSpec, validateGroupName } from '../connection/consume-spec.js';
import { GroupManager } from './group-manager.js';
import { consoleLogger, type BrokerLogger } from './logger.js';
import { openBrokerStore } from './open-store.js';
import { RpcRouter, type Responder, type RpcOwner } from './rpc-router.js';
import { BrokerStats } from './stats.js';
import { TopicRegistry, type TopicState } from './topics.js';

export interface BrokerOptions {
  /** Directory of the log, or ':memory:'. */
  dataDir: string;
  fsync?: FsyncMode;
  topics?: Record<string, TopicConfig>;
  retentionCheckMs?: number;
  subscriberBufferBytes?: number;
  logger?: BrokerLogger;
  /** An already open store (tests, custom stores); the broker closes it on close(). */
  store?: LogStore;
}

interface PendingProduce {
  records: AppendRecord[];
  resolve(results: ProduceResult[]): void;
  reject(err: unknown): void;
}

/** Bounds of one coalesced store batch. */
const COALESCE_MAX_RECORDS = 1000;
const COALESCE_MAX_BYTES = 1024 * 1024;

function sizeOf(records: AppendRecord[]): number {
  let n = 0;
  for (const r of records) n += r.value.length;
  return n;
}

/** Most records one read() returns. */
export const MAX_READ = 10_000;
const MAX_KEY_CHARS = 32 * 1024;
const MAX_HEADERS = 1000;
/** Key plus headers of one message, as the file store allows. */
const MAX_META_BYTES = 64 * 1024;

/** The broker-side state of one connection: what its close() must undo. */
export class BrokerSession implements RpcOwner {
  pending = 0;
  closed = false;
  readonly subscribers = new Set<PushSubscriber>();
  readonly members = new Set<GroupMember>();
  readonly responders = new Set<Responder>();
  /** Called once when the session ends, whoever ends it (its connection, or the broker closing). */
  onClosed: (() => void) | undefined;
  constructor(readonly id: number) {}
}

/**
 * The broker core: topics and their logs, push fan-out, consumer groups, RPC
 * routing and stats. Knows the store, not Nest nor sockets; reached through
 * sessions (connect()), one per in-process client or per network connection.
 */
export class Broker {
  readonly stats = new BrokerStats();
  private readonly topicRegistry: TopicRegistry;
  private readonly dispatcher: Dispatcher;
  private readonly groupManager: GroupManager;
  private readonly rpc: RpcRouter;
  private readonly sessions = new Set<BrokerSession>();
  private sessionSeq = 0;
  /** produce() calls of the current tick per durable topic, appended together. */
  private readonly coalescing = new Map<TopicState, PendingProduce[]>();
  private closing: Promise<void> | undefined;

  private constructor(
    readonly store: LogStore,
    opts: BrokerOptions,
    readonly logger: BrokerLogger,
  ) {
    this.topicRegistry = new TopicRegistry(store, { ...(opts.topics ?? {}) }, logger);
    this.dispatcher = new Dispatcher(this.stats, logger, opts.subscriberBufferBytes ?? DEFAULTS.subscriberBufferBytes);
    this.groupManager = new GroupManager(store, this.stats, logger, (topic, rec, headers) => this.deadLetter(topic, rec, headers));
    this.rpc = new RpcRouter(m => logger.error(m));
  }

  static async open(opts: BrokerOptions): Promise<Broker> {
    // Every option is checked before anything is opened or created: a bad one names itself.
    if (opts === null || typeof opts !== 'object') throw badOption('options', opts, 'an object');
    const checked = resolveOptions({
      dataDir: opts.dataDir,
      fsync: opts.fsync,
      topics: opts.topics,
      retentionCheckMs: opts.retentionCheckMs,
      subscriberBufferBytes: opts.subscriberBufferBytes,
    });
    opts = { ...opts, fsync: checked.fsync, topics: checked.topics, retentionCheckMs: checked.retentionCheckMs, subscriberBufferBytes: checked.subscriberBufferBytes };
    const logger = opts.logger ?? consoleLogger;
    const store = opts.store ?? (await openBrokerStore(opts.dataDir, opts.fsync ?? DEFAULTS.fsync, logger));
    const broker = new Broker(store, opts, logger);
    try {
      await broker.topicRegistry.init();
      await broker.groupManager.init(topic => broker.topicRegistry.get(topic)?.log?.nextOffset);
    } catch (e) {
      await store.close().catch(() => undefined);
      throw e;
    }
    broker.topicRegistry.startRetention(opts.retentionCheckMs ?? DEFAULTS.retentionCheckMs, () => broker.groupManager.wakeAll());
    return broker;
  }

  get dataDir(): string {
    return this.store.dataDir;
  }

  get isClosed(): boolean {
    return this.closing !== undefined;
  }

  /** A new in-process session: the complete broker surface as a BusConnection. */
  connect(): InProcessConnection {
    return new InProcessConnection(this);
  }

  /** Merges the `topics` option of a later client sharing this broker. */
  addTopicConfigs(topics: Record<string, TopicConfig>): void {
    this.topicRegistry.addUserTopics(topics);
  }

  // ---- sessions --------------------------------------------------------------

  openSession(): BrokerSession {
    this.assertOpen();
    const s = new BrokerSession(++this.sessionSeq);
    this.sessions.add(s);
    return s;
  }

  /** Removes a session's subscriptions, consumers (their unacked messages go to other members) and responders. */
  async closeSession(s: BrokerSession): Promise<void> {
    if (s.closed) return;
    s.closed = true;
    this.sessions.delete(s);
    try {
      s.onClosed?.();
    } catch {
      // a listener's failure is not the broker's
    }
    for (const sub of s.subscribers) this.dispatcher.unsubscribe(sub);
    s.subscribers.clear();
    for (const r of s.responders) this.rpc.unserve(r);
    s.responders.clear();
    this.rpc.dropCaller(s);
    const members = [...s.members];
    s.members.clear();
    await Promise.all(members.map(m => m.close()));
  }

  // ---- publish ---------------------------------------------------------------

  /** Publishes a batch to one topic, all or nothing; resolves once durable (durable topics). */
  produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]> {
    try {
      this.assertOpen();
      const t = this.topicRegistry.get(topic);
      if (!t) validateTopicName(topic);
      const records = toRecords(topic, messages);
      if (records.length === 0) return Promise.resolve([]);
      if (t) return this.append(t, records);
      // Checked before the topic is created: a refused first publish must not leave a topic behind.
      checkSizes(topic, this.topicRegistry.configFor(topic).maxMessageBytes, records);
      return this.topicRegistry.resolve(topic).then(t2 => {
        this.assertOpen();
        return this.append(t2, records);
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private append(t: TopicState, records: AppendRecord[]): Promise<ProduceResult[]> {
    const n = records.length;
    const log = t.log;
    if (!log) {
      checkSizes(t.name, t.config.maxMessageBytes, records);
      this.stats.published += n;
      const now = Date.now();
      const out: OutMessage[] = new Array(n);
      const results: ProduceResult[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const r = records[i];
        out[i] = { offset: undefined, timestamp: now, key: r.key, headers: r.headers ?? NO_HEADERS, value: r.value };
        results[i] = { topic: t.name, offset: undefined };
      }
      // In a microtask, not inside produce(): a handler that publishes again must not recurse on the caller's stack.
      queueMicrotask(() => this.dispatcher.publish(t.name, out));
      return Promise.resolve(results);
    }
    // Checked per call up front, so one caller's oversized message cannot fail the calls it is coalesced with.
    checkSizes(t.name, t.config.maxMessageBytes, records);
    return new Promise((resolve, reject) => {
      let q = this.coalescing.get(t);
      if (!q) {
        q = [];
        this.coalescing.set(t, q);
        queueMicrotask(() => this.appendCoalesced(t, log));
      }
      q.push({ records, resolve, reject });
    });
  }

  /**
   * Appends every produce() of this tick on one topic as one store batch (one
   * encoding, one write, one sync), in call order; each call gets its slice.
   * If the store refuses the combined batch, each call is appended alone so
   * only the bad one fails.
   */
  private appendCoalesced(t: TopicState, log: TopicLog): void {
    const q = this.coalescing.get(t);
    this.coalescing.delete(t);
    if (!q) return;
    let i = 0;
    while (i < q.length) {
      // Take calls while they fit a bounded batch.
      let j = i;
      let count = 0;
      let bytes = 0;
      while (j < q.length && (j === i || (count + q[j].records.length <= COALESCE_MAX_RECORDS && bytes + sizeOf(q[j].records) <= COALESCE_MAX_BYTES))) {
        count += q[j].records.length;
        bytes += sizeOf(q[j].records);
        j++;
      }
      const chunk = q.slice(i, j);
      i = j;
      const all = chunk.length === 1 ? chunk[0].records : chunk.flatMap(p => p.records);
      try {
        this.appendChunk(t, log, chunk, log.append(all));
      } catch (e) {
        if (chunk.length === 1) {
          chunk[0].reject(e);
          continue;
        }
        for (const p of chunk) {
          try {
            this.appendChunk(t, log, [p], log.append(p.records));
          } catch (e2) {
            p.reject(e2);
          }
        }
      }
    }
  }

  private appendChunk(t: TopicState, log: TopicLog, chunk: PendingProduce[], res: AppendResult): void {
    let n = 0;
    for (const p of chunk) n += p.records.length;
    this.stats.published += n;
    res.durable.then(
      () => {
        const out: OutMessage[] = new Array(n);
        let k = 0;
        for (const p of chunk) {
          const results: ProduceResult[] = new Array(p.records.length);
          for (let i = 0; i < p.records.length; i++, k++) {
            const r = p.records[i];
            const offset = res.baseOffset + k;
            out[k] = { offset, timestamp: res.timestamp, key: r.key, headers: r.headers ?? NO_HEADERS, value: r.value };
            results[i] = { topic: t.name, offset };
          }
          p.resolve(results);
        }
        this.dispatcher.publish(t.name, out);
        this.groupManager.wake(log.name);
      },
      err => {
        for (const p of chunk) p.reject(err);
      },
    );
  }

  private deadLetter(topic: string, rec: LogRecord, headers: Record<string, string>): Promise<unknown> {
    return this.produce(topic, [{ value: rec.value, key: rec.key, headers }]);
  }

  // ---- push ------------------------------------------------------------------

  subscribe(s: BrokerSession, spec: SubscribeSpec, onMessage: (d: Delivery) => void): Subscription {
    this.assertSession(s);
    const sub = this.dispatcher.subscribe(spec, `s${s.id}`, onMessage);
    s.subscribers.add(sub);
    const dispatcher = this.dispatcher;
    return {
      done: d => dispatcher.done(d),
      freeBytes: bytes => dispatcher.free(sub, bytes),
      unsubscribe: async () => {
        s.subscribers.delete(sub);
        dispatcher.unsubscribe(sub);
      },
    };
  }

  // ---- pull ------------------------------------------------------------------

  async consume(s: BrokerSession, spec: ConsumeSpec, onMessage: (d: Delivery) => void): Promise<Consumer> {
    this.assertSession(s);
    validateConsumeSpec(spec);
    if (typeof onMessage !== 'function') throw new LogBusError('INVALID_ARGUMENT', 'consume needs a message callback');
    const t = await this.topicRegistry.resolve(spec.topic);
    if (!t.log) {
      throw new LogBusError(
        'NOT_DURABLE',
        `topic '${spec.topic}' is not durable (durable: false), so nothing is stored to consume; use @Subscribe for it, or make it durable`,
      );
    }
    this.assertSession(s);
    const member = await this.groupManager.join(t.log, spec, onMessage, m => s.members.delete(m));
    if (s.closed) {
      await member.close();
      throw new LogBusError('CLOSED', 'the connection closed while consume() was starting');
    }
    s.members.add(member);
    return member;
  }

  // ---- RPC -------------------------------------------------------------------

  serveRpc(s: BrokerSession, pattern: string, onRequest: (req: RpcIncoming) => void): { close(): Promise<void> } {
    this.assertSession(s);
    const r = this.rpc.serve(s, pattern, onRequest);
    s.responders.add(r);
    return {
      close: async () => {
        s.responders.delete(r);
        this.rpc.unserve(r);
      },
    };
  }

  request(s: BrokerSession, pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    if (s.closed || this.closing) {
      queueMicrotask(() => handler.error(new LogBusError('CLOSED', 'the connection is closed')));
      return { cancel: () => undefined };
    }
    return this.rpc.request(s, pattern, value, handler);
  }

  // ---- admin -----------------------------------------------------------------

  async read(topic: string, from: number | 'earliest', max: number): Promise<ReadMessage[]> {
    this.assertOpen();
    validateTopicName(topic);
    if (from !== 'earliest' && !(Number.isInteger(from) && (from as number) >= 0)) {
      throw new LogBusError('INVALID_ARGUMENT', `read 'from' must be 'earliest' or an offset >= 0, not ${JSON.stringify(from)}`);
    }
    if (!Number.isInteger(max) || max < 1) throw new LogBusError('INVALID_ARGUMENT', `read 'max' must be a positive integer, not ${JSON.stringify(max)}`);
    const t = this.topicRegistry.get(topic);
    if (!t) return [];
    if (!t.log) throw new LogBusError('NOT_DURABLE', `topic '${topic}' is not durable: nothing is stored to read`);
    const start = from === 'earliest' ? t.log.earliestOffset : from;
    return t.log.read(start, Math.min(max, MAX_READ));
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    this.assertOpen();
    await this.topicRegistry.createTopic(name, config);
  }

  async topics(): Promise<TopicInfo[]> {
    this.assertOpen();
    return this.topicRegistry.info();
  }

  async groups(topic: string): Promise<GroupInfo[]> {
    this.assertOpen();
    validateTopicName(topic);
    const log = this.topicRegistry.get(topic)?.log;
    return log ? this.groupManager.info(log) : [];
  }

  async resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void> {
    this.assertOpen();
    validateTopicName(topic);
    validateGroupName(group);
    const t = await this.topicRegistry.resolve(topic);
    if (!t.log) throw new LogBusError('NOT_DURABLE', `topic '${topic}' is not durable: it has no consumer groups`);
    await this.groupManager.reset(t.log, group, to);
  }

  async getStats(): Promise<BusStats> {
    return this.stats.snapshot();
  }

  /** Runs retention now (tests, tools); it also runs every retentionCheckMs. */
  async enforceRetention(now?: number): Promise<void> {
    await this.topicRegistry.runRetention(now);
  }

  // ---- lifecycle -------------------------------------------------------------

  /** Stops dispatch, commits group positions, closes every session and the store. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.topicRegistry.stop();
      await this.groupManager.close();
      await Promise.all([...this.sessions].map(s => this.closeSession(s)));
      await this.store.close();
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new LogBusError('CLOSED', 'the broker is closed');
  }

  private assertSession(s: BrokerSession): void {
    this.assertOpen();
    if (s.closed) throw new LogBusError('CLOSED', 'the connection is closed');
  }
}

function checkSizes(topic: string, max: number, records: AppendRecord[]): void {
  for (const r of records) {
    if (r.value.length > max) {
      throw new LogBusError(
        'MESSAGE_TOO_LARGE',
        `message of ${r.value.length} bytes on '${topic}' exceeds maxMessageBytes ${max}; send smaller messages or raise the topic's maxMessageBytes`,
      );
    }
  }
}

/** Checks a batch completely before anything is stored; copies it so later mutation cannot change it. */
function toRecords(topic: string, messages: OutgoingMessage[]): AppendRecord[] {
  if (!Array.isArray(messages)) throw new LogBusError('INVALID_ARGUMENT', `produce('${topic}') needs an array of messages`);
  if (messages.length > LIMITS.maxBatchMessages) {
    throw new LogBusError('INVALID_ARGUMENT', `a batch of ${messages.length} messages exceeds the limit of ${LIMITS.maxBatchMessages}; split it`);
  }
  const out: AppendRecord[] = new Array(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    if (m === null || typeof m !== 'object' || !Buffer.isBuffer(m.value)) {
      throw new LogBusError('INVALID_ARGUMENT', `message ${i} for '${topic}' must be { value: Buffer, key?, headers? }`);
    }
    const key = m.key;
    if (key !== undefined && (typeof key !== 'string' || key.length > MAX_KEY_CHARS)) {
      throw new LogBusError('INVALID_ARGUMENT', `message ${i} for '${topic}': key must be a string of at most ${MAX_KEY_CHARS} characters`);
    }
    const headers = m.headers === undefined ? undefined : checkHeaders(topic, i, m.headers);
    if (headers !== undefined || (key !== undefined && key.length > 1024)) {
      let meta = key === undefined ? 0 : Buffer.byteLength(key);
      if (headers) for (const k in headers) meta += Buffer.byteLength(k) + Buffer.byteLength(headers[k]);
      if (meta > MAX_META_BYTES) {
        throw new LogBusError('MESSAGE_TOO_LARGE', `message ${i} for '${topic}': key and headers take ${meta} bytes, more than ${MAX_META_BYTES}`);
      }
    }
    out[i] = { key, headers, value: m.value };
  }
  return out;
}

function checkHeaders(topic: string, i: number, h: unknown): Record<string, string> {
  if (h === null || typeof h !== 'object' || Array.isArray(h)) {
    throw new LogBusError('INVALID_ARGUMENT', `message ${i} for '${topic}': headers must be a Record<string, string>`);
  }
  const copy: Record<string, string> = {};
  let n = 0;
  // for-in with an own-property check: no entries array per message
  for (const k in h) {
    if (!Object.hasOwn(h, k)) continue;
    const v = (h as Record<string, unknown>)[k];
    if (typeof v !== 'string') {
      throw new LogBusError('INVALID_ARGUMENT', `message ${i} for '${topic}': header '${k}' must be a string, not ${typeof v}`);
    }
    if (++n > MAX_HEADERS) throw new LogBusError('INVALID_ARGUMENT', `message ${i} for '${topic}': more than ${MAX_HEADERS} headers`);
    copy[k] = v;
  }
  return copy;
}
