import { LogBusError } from '../errors.js';
import type { TopicConfig } from '../options.js';
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
} from './types.js';

/**
 * A connection whose driver module is loaded on connect(), so a driver that
 * is not installed or not built (ioredis, the wire client) only fails for the
 * users who ask for it, with a clear error.
 */
export class DeferredConnection implements BusConnection {
  private inner: BusConnection | undefined;
  private readonly listeners: Array<(s: ConnectionStatus) => void> = [];
  private closed = false;

  constructor(
    private readonly what: string,
    private readonly load: () => Promise<BusConnection>,
  ) {}

  get status(): ConnectionStatus {
    return this.inner?.status ?? 'disconnected';
  }

  onStatus(listener: (status: ConnectionStatus) => void): void {
    this.listeners.push(listener);
    this.inner?.onStatus(listener);
  }

  async connect(): Promise<void> {
    if (this.closed) throw new LogBusError('CLOSED', `the ${this.what} connection is closed`);
    if (!this.inner) {
      let inner: BusConnection;
      try {
        inner = await this.load();
      } catch (e) {
        if (e instanceof LogBusError) throw e;
        throw new LogBusError('INVALID_OPTION', `the ${this.what} driver could not be loaded: ${(e as Error)?.message ?? e}`, { cause: e });
      }
      for (const l of this.listeners) inner.onStatus(l);
      this.inner = inner;
    }
    await this.inner.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inner?.close();
  }

  private get c(): BusConnection {
    if (this.inner) return this.inner;
    throw new LogBusError('CLOSED', `the ${this.what} connection is not connected; call connect() first`);
  }

  produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]> {
    return this.c.produce(topic, messages);
  }
  subscribe(spec: SubscribeSpec, onMessage: (d: Delivery) => void): Promise<Subscription> {
    return this.c.subscribe(spec, onMessage);
  }
  consume(spec: ConsumeSpec, onMessage: (d: Delivery) => void): Promise<Consumer> {
    return this.c.consume(spec, onMessage);
  }
  serveRpc(pattern: string, onRequest: (req: RpcIncoming) => void): Promise<{ close(): Promise<void> }> {
    return this.c.serveRpc(pattern, onRequest);
  }
  request(pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    return this.c.request(pattern, value, handler);
  }
  read(topic: string, from: number | 'earliest', max: number): Promise<ReadMessage[]> {
    return this.c.read(topic, from, max);
  }
  createTopic(name: string, config: TopicConfig): Promise<void> {
    return this.c.createTopic(name, config);
  }
  topics(): Promise<TopicInfo[]> {
    return this.c.topics();
  }
  groups(topic: string): Promise<GroupInfo[]> {
    return this.c.groups(topic);
  }
  resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void> {
    return this.c.resetGroup(topic, group, to);
  }
  stats(): Promise<BusStats> {
    return this.c.stats();
  }
}
