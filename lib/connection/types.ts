/**
 * How the Nest layer reaches a bus. One interface, several drivers:
 * in-process (the embedded broker), remote (the wire protocol to a logbus
 * broker), and engines (Redis). The Nest layer knows nothing else.
 *
 * Payloads are opaque bytes here: serialization belongs to the Nest layer.
 * Deliveries are per message, with handles instead of per-message closures,
 * so a driver can batch below this interface (frames, acks).
 */
import type { TopicConfig } from '../options.js';

export type ConnectionStatus = 'connected' | 'disconnected' | 'reconnecting';

export interface OutgoingMessage {
  value: Buffer;
  key?: string;
  headers?: Record<string, string>;
}

export interface ProduceResult {
  topic: string;
  /** undefined on non-durable topics */
  offset: number | undefined;
}

/** A stored message as read() returns it. */
export interface ReadMessage {
  offset: number;
  timestamp: number;
  key: string | undefined;
  headers: Record<string, string>;
  value: Buffer;
}

/**
 * The headers of a delivery that has none: one frozen object instead of an
 * empty one per message. Whoever hands headers to user code gives a copy
 * (LogBusContext.getHeaders()).
 */
export const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** A message handed to a push subscriber or a pull consumer. */
export interface Delivery {
  /** Driver-assigned id, unique per subscription/consumer; used to ack, nack, release. */
  readonly id: number;
  readonly topic: string;
  readonly offset: number | undefined;
  readonly timestamp: number;
  readonly key: string | undefined;
  /** May be shared with other deliveries of the message, or be NO_HEADERS: read it, never change it. */
  readonly headers: Readonly<Record<string, string>>;
  readonly value: Buffer;
  /** 1 on first delivery; always 1 for push */
  readonly deliveryCount: number;
  /** pull: the consumer group; push: undefined */
  readonly group: string | undefined;
}

export interface SubscribeSpec {
  /** topic or wildcard pattern (`*`, `>`) */
  pattern: string;
  /** queue group: each message to one live member, round robin */
  queue?: string;
  /** bounded buffer: messages beyond this many bytes not yet done() are dropped and counted */
  bufferBytes?: number;
  /**
   * Internal: what each message not yet done() is charged besides its bytes
   * (default: what an in-process delivery keeps, payload included). The wire
   * server keeps nothing once it has encoded one, and charges a fixed window.
   */
  heldBytesPerMessage?: number;
  /**
   * Internal, for the wire server: each message as the dispatcher holds it,
   * with no delivery object. The callee encodes it and keeps nothing; its
   * charge stays in the buffer until Subscription.freeBytes. `onMessage` is
   * not called when this is set.
   */
  onRaw?: (topic: string, m: RawMessage, id: number, charge: number) => void;
}

/** A message's fields, as a push subscriber's onRaw gets them. */
export type RawMessage = Pick<Delivery, 'offset' | 'timestamp' | 'key' | 'headers' | 'value'>;

export type ConsumeFrom = 'earliest' | 'latest' | { offset: number } | { timestamp: number };

export interface ConsumeSpec {
  topic: string;
  group: string;
  from: ConsumeFrom;
  concurrency: number;
  ackWaitMs: number;
  maxDeliver: number;
  backoffMs: number[];
  deadLetter: string | false;
}

export interface Subscription {
  /** Push: the handler is finished with this delivery (frees its bytes in the subscriber's buffer). */
  done(delivery: Delivery): void;
  /** In process only, for the wire server: frees the charges of onRaw messages now done. */
  freeBytes?(bytes: number): void;
  unsubscribe(): Promise<void>;
}

export interface Consumer {
  ack(delivery: Delivery): void;
  /** Handler failed: redeliver after the backoff, or dead-letter after maxDeliver. */
  nack(delivery: Delivery, error: string): void;
  /** Stop receiving new messages; in-flight ones may still be acked/nacked. */
  pause(): void;
  /** Stop; unacked deliveries go back to the group at once. */
  close(): Promise<void>;
}

/** A request arriving at an RPC handler. */
export interface RpcIncoming {
  readonly pattern: string;
  readonly value: Buffer;
  /** Send one reply packet; done=true ends the call (Nest's isDisposed). */
  reply(value: Buffer, done: boolean): void;
}

export interface RpcReplyHandler {
  reply(value: Buffer, done: boolean): void;
  /** NO_RESPONDERS, CONNECTION_LOST, CLOSED … */
  error(err: Error): void;
}

export interface RpcCall {
  cancel(): void;
}

export interface TopicInfo {
  name: string;
  durable: boolean;
  earliestOffset: number;
  nextOffset: number;
  bytes: number;
}

export interface GroupInfo {
  group: string;
  committedOffset: number;
  lag: number;
  inFlight: number;
}

export interface BusStats {
  published: number;
  delivered: number;
  /** subscriber id (`pattern` or `pattern#queue`, plus instance) → dropped count */
  dropped: Record<string, number>;
  redelivered: number;
  deadLettered: number;
}

export interface BusConnection {
  connect(): Promise<void>;
  close(): Promise<void>;
  readonly status: ConnectionStatus;
  onStatus(listener: (status: ConnectionStatus) => void): void;

  /** Publishes a batch to one topic, all or nothing; resolves once taken (durably on durable topics). */
  produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]>;

  subscribe(spec: SubscribeSpec, onMessage: (d: Delivery) => void): Promise<Subscription>;
  consume(spec: ConsumeSpec, onMessage: (d: Delivery) => void): Promise<Consumer>;

  serveRpc(pattern: string, onRequest: (req: RpcIncoming) => void): Promise<{ close(): Promise<void> }>;
  /** Errors at once (via handler.error) with NO_RESPONDERS when nobody serves the pattern. Timeouts belong to the caller. */
  request(pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall;

  read(topic: string, from: number | 'earliest', max: number): Promise<ReadMessage[]>;
  createTopic(name: string, config: TopicConfig): Promise<void>;
  topics(): Promise<TopicInfo[]>;
  groups(topic: string): Promise<GroupInfo[]>;
  resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void>;
  stats(): Promise<BusStats>;
}
