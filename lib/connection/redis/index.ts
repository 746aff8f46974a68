/**
 * The Redis engine driver: the BusConnection interface on Redis Streams and
 * pub/sub (Redis >= 6.2; tested on 7.0). See keys.ts for the key layout, and
 * produce.ts, push.ts, pull.ts, rpc.ts, admin.ts for how each part of API.md
 * maps onto Redis.
 *
 * Connections: `main` (every non-blocking command, auto-pipelined), `sub`
 * (pub/sub: push, RPC liveness and replies, group events), one blocking
 * connection per consumer and one for all RPC responders. ioredis reconnects
 * them and re-subscribes; consumers re-create their group if Redis lost it.
 *
 * Where Redis differs from the embedded broker (for the README's table):
 * - Durability is Redis's: produce resolves once Redis has executed the append;
 *   it survives a Redis crash only with appendonly yes (+ appendfsync always for
 *   power loss). The `fsync` option does not apply.
 * - Timestamps are Redis server time.
 * - Retention runs as part of produce (age: at most once a second per topic and
 *   connection; size: MAXLEN from an estimate of bytes per message). An idle
 *   topic is trimmed at its next produce. topics().bytes is an estimate.
 * - Push queue groups: every member receives every message and keeps its share
 *   (round robin by sequence while membership is stable). For the moment a
 *   membership changes (join/leave: at once; a crashed member: up to 3 s) a
 *   message may reach two members or none.
 * - Pull: a crashed member's unacked messages go to a live member once its
 *   heartbeat expires (up to 3 s; at once after a clean close). Same-key order
 *   holds across instances, per key bucket (4096 buckets per topic), so two keys
 *   in one bucket are also serialized.
 * - RPC: a request popped by a responder that then crashes is lost (TIMEOUT).
 * - Redis Cluster (url listing several nodes, or `?cluster=true`; Redis 7): topic
 *   keys are hash-tagged per topic, RPC lists share one slot (`{r}`), RPC liveness
 *   uses sharded pub/sub; push and group events use classic pub/sub (broadcast
 *   to every node).
 * - Redis Sentinel: `redis://s1:26379,s2:26379?sentinel=NAME` (the hosts are
 *   sentinels); ioredis finds the primary through them and follows failovers.
 */
import { randomBytes } from 'node:crypto';
import { LogBusError } from '../../errors.js';
import type { ResolvedOptions, TopicConfig } from '../../options.js';
import type {
  BusConnection,
  BusStats,
  ConnectionStatus,
  ConsumeFrom,
  ConsumeSpec,
  Consumer,
  Delivery,
  GroupInfo,
  OutgoingMessage,
  ProduceResult,
  ReadMessage,
  RpcCall,
  RpcIncoming,
  RpcReplyHandler,
  SubscribeSpec,
  Subscription,
  TopicInfo,
} from '../types.js';
import { Admin } from './admin.js';
import { asBusError, clientOptions, connectOrFail, createClient, isClusterUrl, loadIoredis, type RedisClient } from './client.js';
import { consoleDriverLogger, DriverStats, type DriverContext, type DriverLogger } from './context.js';
import { GroupEvents } from './group-events.js';
import { RedisKeys } from './keys.js';
import { Producer } from './produce.js';
import { validateConsumeSpec } from '../consume-spec.js';
import { RedisConsumer } from './pull.js';
import { PushHub } from './push.js';
import { RpcRequester, RpcResponder } from './rpc.js';
import { TopicConfigs } from './topic-config.js';

interface Parts {
  main: RedisClient;
  sub: RedisClient;
  ctx: DriverContext;
  producer: Producer;
  push: PushHub;
  responder: RpcResponder;
  requester: RpcRequester;
  admin: Admin;
}

export class RedisConnection implements BusConnection {
  private readonly keys: RedisKeys;
  private readonly cluster: boolean;
  private readonly instanceId = randomBytes(6).toString('hex');
  private readonly stats_ = new DriverStats();
  private readonly listeners: Array<(s: ConnectionStatus) => void> = [];
  private readonly consumers = new Set<RedisConsumer>();
  private readonly extraClients = new Set<RedisClient>();
  private status_: ConnectionStatus = 'disconnected';
  private parts: Parts | undefined;
  private connecting: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly logger: DriverLogger = consoleDriverLogger,
  ) {
    this.cluster = isClusterUrl(options.url ?? '');
    this.keys = new RedisKeys(options.prefix ?? 'logbus', this.cluster);
  }

  get status(): ConnectionStatus {
    return this.status_;
  }

  onStatus(listener: (status: ConnectionStatus) => void): void {
    this.listeners.push(listener);
  }

  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new LogBusError('CLOSED', 'this Redis connection is closed; create a new one'));
    this.connecting ??= this.open().catch(e => {
      this.connecting = undefined;
      throw e;
    });
    return this.connecting;
  }

  private async open(): Promise<void> {
    const url = this.options.url;
    if (!url || !/^rediss?:\/\//.test(url)) throw new LogBusError('INVALID_OPTION', `the Redis driver needs a redis:// or rediss:// url, got ${url}`);
    const io = await loadIoredis();
    const main = createClient(io, url, clientOptions({ connectionName: `logbus-${this.instanceId}` }));
    main.on('error', () => undefined); // surfaced through commands and status, not as unhandled events
    main.on('ready', () => this.setStatus('connected'));
    main.on('reconnecting', () => this.setStatus('reconnecting'));
    main.on('end', () => this.setStatus('disconnected'));
    await connectOrFail(main, url);
    try {
      await checkServer(main, this.cluster);
    } catch (e) {
      main.disconnect(false);
      throw asBusError(e, 'connect');
    }
    const sub = main.duplicate();
    sub.on('error', () => undefined);
    try {
      await connectOrFail(sub, url);
    } catch (e) {
      main.disconnect(false);
      throw e;
    }
    const configs = new TopicConfigs(main, this.keys, this.options.topics ?? {}, m => this.logger.warn(m));
    try {
      await configs.register();
    } catch (e) {
      main.disconnect(false);
      sub.disconnect(false);
      throw asBusError(e, 'connect');
    }
    const groupEvents = new GroupEvents(this.keys, sub, main);
    this.stats_.attach(main, this.keys);
    let producer: Producer;
    const ctx: DriverContext = {
      options: this.options,
      keys: this.keys,
      main,
      stats: this.stats_,
      logger: this.logger,
      instanceId: this.instanceId,
      configFor: topic => configs.get(topic),
      produce: (topic, messages) => producer.produce(topic, messages),
      groupEvents,
      cluster: this.cluster,
      openClient: name => this.openClient(main, name),
    };
    producer = new Producer(ctx);
    this.parts = {
      main,
      sub,
      ctx,
      producer,
      push: new PushHub(ctx, sub),
      responder: new RpcResponder(ctx, sub),
      requester: new RpcRequester(ctx, sub),
      admin: new Admin(ctx, configs),
    };
    if (this.closed) {
      await this.close();
      throw new LogBusError('CLOSED', 'the Redis connection was closed while connecting');
    }
    this.setStatus('connected');
  }

  private async openClient(main: RedisClient, name: string): Promise<RedisClient> {
    if (this.closed) throw new LogBusError('CLOSED', 'the Redis connection is closed');
    // blocking reads wait through reconnects instead of failing after a few retries
    const c = main.duplicate({ maxRetriesPerRequest: null, enableAutoPipelining: false, connectionName: `logbus-${this.instanceId}-${name.replace(/\s+/g, '_')}` });
    c.on('error', () => undefined);
    await connectOrFail(c, this.options.url!);
    this.extraClients.add(c);
    c.on('end', () => this.extraClients.delete(c));
    return c;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.connecting?.catch(() => undefined);
    const p = this.parts;
    if (!p) return;
    this.parts = undefined;
    await Promise.all([...this.consumers].map(c => c.close()));
    this.consumers.clear();
    p.requester.close();
    await Promise.all([p.push.close(), p.responder.close()]);
    await this.stats_.close();
    for (const c of this.extraClients) c.disconnect(false);
    this.extraClients.clear();
    await Promise.all([p.sub.quit().catch(() => p.sub.disconnect(false)), p.main.quit().catch(() => p.main.disconnect(false))]);
    this.setStatus('disconnected');
  }

  private setStatus(s: ConnectionStatus): void {
    if (this.closed && s !== 'disconnected') return;
    if (s === this.status_) return;
    this.status_ = s;
    for (const l of this.listeners) {
      try {
        l(s);
      } catch (e) {
        this.logger.error(`a status listener threw: ${(e as Error)?.message ?? e}`);
      }
    }
  }

  private get p(): Parts {
    if (this.parts) return this.parts;
    throw new LogBusError('CLOSED', this.closed ? 'the Redis connection is closed' : 'the Redis connection is not connected; call connect() first');
  }

  produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]> {
    try {
      return this.p.producer.produce(topic, messages);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async subscribe(spec: SubscribeSpec, onMessage: (d: Delivery) => void): Promise<Subscription> {
    return this.p.push.subscribe(spec, onMessage);
  }

  async consume(spec: ConsumeSpec, onMessage: (d: Delivery) => void): Promise<Consumer> {
    const p = this.p;
    validateConsumeSpec(spec);
    const config = await p.ctx.configFor(spec.topic);
    if (!config.durable) {
      throw new LogBusError('NOT_DURABLE', `topic '${spec.topic}' is not durable (durable: false): it has no log to consume; use a push subscription`);
    }
    const consumer = new RedisConsumer(p.ctx, spec, onMessage);
    await consumer.start();
    this.consumers.add(consumer);
    const close = consumer.close.bind(consumer);
    consumer.close = async () => {
      this.consumers.delete(consumer);
      await close();
    };
    return consumer;
  }

  async serveRpc(pattern: string, onRequest: (req: RpcIncoming) => void): Promise<{ close(): Promise<void> }> {
    return this.p.responder.serve(pattern, onRequest);
  }

  request(pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    const p = this.parts;
    if (!p) {
      queueMicrotask(() => handler.error(new LogBusError('CLOSED', 'the Redis connection is not connected')));
      return { cancel: () => undefined };
    }
    return p.requester.request(pattern, value, handler);
  }

  async read(topic: string, from: number | 'earliest', max: number): Promise<ReadMessage[]> {
    return this.p.admin.read(topic, from, max);
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    return this.p.admin.createTopic(name, config);
  }

  async topics(): Promise<TopicInfo[]> {
    return this.p.admin.topics();
  }

  async groups(topic: string): Promise<GroupInfo[]> {
    return this.p.admin.groups(topic);
  }

  async resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void> {
    return this.p.admin.resetGroup(topic, group, to);
  }

  async stats(): Promise<BusStats> {
    void this.p; // CLOSED when not connected
    try {
      return await this.stats_.snapshot();
    } catch (e) {
      throw asBusError(e, 'stats');
    }
  }
}

/** Fails at connect, with a clear message, on a Redis the driver cannot run on. */
async function checkServer(main: RedisClient, clusterUrl: boolean): Promise<void> {
  const [server, cluster] = (await Promise.all([main.call('INFO', 'server'), main.call('INFO', 'cluster')])) as [string, string];
  const version = /redis_version:(\d+)\.(\d+)/.exec(server);
  if (version && (Number(version[1]) < 6 || (Number(version[1]) === 6 && Number(version[2]) < 2))) {
    throw new LogBusError('INVALID_OPTION', `the Redis driver needs Redis 6.2 or newer (Streams commands); this server is ${version[0].split(':')[1]}`);
  }
  if (!clusterUrl && /cluster_enabled:1/.test(cluster)) {
    throw new LogBusError('INVALID_OPTION', "this Redis is a Cluster node: list the nodes in the url ('redis://h1:7000,h2:7001') or add '?cluster=true'");
  }
  if (clusterUrl && /redis_version:6\./.test(server)) {
    throw new LogBusError('INVALID_OPTION', 'the Redis driver on Redis Cluster needs Redis 7 (sharded pub/sub)');
  }
}

export function createRedisConnection(options: ResolvedOptions, logger?: DriverLogger): BusConnection {
  return new RedisConnection(options, logger);
}
