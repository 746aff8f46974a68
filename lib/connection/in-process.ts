import type { BrokerSession } from '../broker/broker.js';
import type { Broker } from '../broker/broker.js';
import type { BrokerLogger } from '../broker/logger.js';
import { acquireBroker, releaseBroker } from '../broker/registry.js';
import { LogBusError } from '../errors.js';
import type { ResolvedOptions, TopicConfig } from '../options.js';
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

/** Finds the broker on connect(), with how to let go of it on close(). */
export type AttachBroker = () => Promise<{ broker: Broker; release?: (b: Broker) => Promise<void> }>;

const closedError = (): LogBusError => new LogBusError('CLOSED', 'the connection is closed; create and connect a new one');

/**
 * A session on a broker in this process. Calls go straight to the broker: no
 * copies, no encoding. close() removes its subscriptions, consumers (their
 * unacked messages go to other members at once) and RPC handlers.
 */
export class InProcessConnection implements BusConnection {
  private broker: Broker | undefined;
  private session: BrokerSession | undefined;
  private release: ((b: Broker) => Promise<void>) | undefined;
  private state: ConnectionStatus = 'disconnected';
  private ended = false;
  private connecting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly listeners: ((s: ConnectionStatus) => void)[] = [];

  /** `broker.connect()` gives a connected session; createEmbeddedConnection() a lazy one. */
  constructor(source: Broker | AttachBroker) {
    if (typeof source === 'function') this.pendingAttach = source;
    else this.attach(source, undefined);
  }

  private pendingAttach: AttachBroker | undefined;

  get status(): ConnectionStatus {
    return this.state;
  }

  onStatus(listener: (status: ConnectionStatus) => void): void {
    this.listeners.push(listener);
  }

  /** Idempotent; concurrent calls share one attempt. */
  connect(): Promise<void> {
    if (this.ended) return Promise.reject(closedError());
    if (this.session) return Promise.resolve();
    this.connecting ??= (async () => {
      const { broker, release } = await this.pendingAttach!();
      if (this.ended) {
        await release?.(broker);
        throw closedError();
      }
      try {
        this.attach(broker, release);
      } catch (e) {
        await release?.(broker);
        throw e;
      }
      this.pendingAttach = undefined;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private attach(broker: Broker, release: ((b: Broker) => Promise<void>) | undefined): void {
    this.broker = broker;
    this.release = release;
    const session = broker.openSession();
    this.session = session;
    // The broker may end the session itself (broker.close()): then this connection is closed too.
    session.onClosed = () => {
      if (this.session !== session) return;
      this.ended = true;
      this.setStatus('disconnected');
    };
    this.setStatus('connected');
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.ended = true;
      if (this.connecting) await this.connecting.catch(() => undefined);
      const { broker, session, release } = this;
      this.session = undefined;
      if (broker && session) await broker.closeSession(session);
      if (broker && release) await release(broker);
      this.setStatus('disconnected');
    })();
    return this.closing;
  }

  private setStatus(s: ConnectionStatus): void {
    if (this.state === s) return;
    this.state = s;
    for (const l of this.listeners) {
      try {
        l(s);
      } catch {
        // a listener's failure is not the connection's
      }
    }
  }

  private live(): { broker: Broker; session: BrokerSession } {
    const { broker, session } = this;
    if (!broker || !session || this.ended) {
      throw this.ended ? closedError() : new LogBusError('CLOSED', 'the connection is not connected yet; await connect() first');
    }
    return { broker, session };
  }

  produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]> {
    try {
      return this.live().broker.produce(topic, messages);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async subscribe(spec: SubscribeSpec, onMessage: (d: Delivery) => void): Promise<Subscription> {
    const { broker, session } = this.live();
    return broker.subscribe(session, spec, onMessage);
  }

  async consume(spec: ConsumeSpec, onMessage: (d: Delivery) => void): Promise<Consumer> {
    const { broker, session } = this.live();
    return broker.consume(session, spec, onMessage);
  }

  async serveRpc(pattern: string, onRequest: (req: RpcIncoming) => void): Promise<{ close(): Promise<void> }> {
    const { broker, session } = this.live();
    return broker.serveRpc(session, pattern, onRequest);
  }

  request(pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    let live: { broker: Broker; session: BrokerSession };
    try {
      live = this.live();
    } catch (e) {
      queueMicrotask(() => handler.error(e as Error));
      return { cancel: () => undefined };
    }
    return live.broker.request(live.session, pattern, value, handler);
  }

  async read(topic: string, from: number | 'earliest', max: number): Promise<ReadMessage[]> {
    return this.live().broker.read(topic, from, max);
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    return this.live().broker.createTopic(name, config);
  }

  async topics(): Promise<TopicInfo[]> {
    return this.live().broker.topics();
  }

  async groups(topic: string): Promise<GroupInfo[]> {
    return this.live().broker.groups(topic);
  }

  async resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void> {
    return this.live().broker.resetGroup(topic, group, to);
  }

  async stats(): Promise<BusStats> {
    return this.live().broker.getStats();
  }

  /** The broker behind this connection (LogBroker, wire server, tests); undefined before connect(). */
  get brokerInstance(): Broker | undefined {
    return this.broker;
  }
}

/**
 * The embedded default: connect() acquires the process-wide broker of
 * options.dataDir (opening it if first), close() releases it (closing it if last).
 */
export function createEmbeddedConnection(options: ResolvedOptions, logger?: BrokerLogger): InProcessConnection {
  return new InProcessConnection(async () => ({ broker: await acquireBroker(options, logger), release: releaseBroker }));
}
