import { LogBusError } from '../errors.js';
import type { Delivery, SubscribeSpec } from '../connection/types.js';
import { positiveInt } from '../options.js';
import { PatternTrie, validatePattern } from '../topic.js';
import type { BrokerLogger } from './logger.js';
import { RateLimitedWarnings } from './logger.js';
import type { BrokerStats } from './stats.js';

/** One published message as the dispatcher fans it out; payload bytes shared by every subscriber. */
export interface OutMessage {
  offset: number | undefined;
  timestamp: number;
  key: string | undefined;
  /** Shared by every delivery of the message; NO_HEADERS when it has none. */
  headers: Readonly<Record<string, string>>;
  value: Buffer;
}

/**
 * What a held delivery costs an in-process subscriber besides its payload,
 * key, topic and headers: the message, delivery, headers and Buffer objects.
 * Measured (live heap after GC, per held 100 B message) at ~390 B; charging
 * 64 let an 8 MiB buffer hold ~40 MiB. The wire server keeps less and says
 * so (SubscribeSpec.heldBytesPerMessage, WIRE_HELD_OVERHEAD).
 */
export const DELIVERY_OVERHEAD = 384;
/** Per header besides its name and value: object slot and the wire's length prefixes. */
export const HEADER_OVERHEAD = 16;

/**
 * A delivery's bytes: topic, payload, key and headers. With its subscriber's
 * per-message overhead, what it is charged in the subscriber's buffer: at
 * least its encoded size on the wire (ASCII strings), so the frames queued
 * towards a subscriber that does not read are bounded by its buffer too.
 */
export function deliveryBytes(topic: string, m: OutMessage): number {
  let size = topic.length + m.value.length;
  if (m.key !== undefined) size += m.key.length;
  const h = m.headers;
  for (const k in h) size += HEADER_OVERHEAD + k.length + h[k].length;
  return size;
}

/** Bounds subscriptions per broker. */
const MAX_SUBSCRIPTIONS = 1_000_000;

export class PushSubscriber {
  inflightBytes = 0;
  nextId = 1;
  closed = false;
  group: QueueGroup | undefined;

  constructor(
    readonly statId: string,
    readonly pattern: string,
    readonly queue: string | undefined,
    readonly bufferBytes: number,
    readonly onMessage: (d: Delivery) => void,
    /** Charged per delivery besides its bytes (what its side keeps of one). */
    readonly overhead: number = DELIVERY_OVERHEAD,
    /** SubscribeSpec.onRaw: messages without a delivery object each. */
    readonly onRaw?: SubscribeSpec['onRaw'],
  ) {}

  /** Made once per subscriber, not per dropped message. */
  readonly describeDrops = (): string =>
    `push subscriber ${this.statId} is too slow: its buffer of ${this.bufferBytes} bytes is full, dropping messages (see stats().dropped)`;

  hasRoom(size: number): boolean {
    // One message always fits in an empty buffer, else a message bigger than the buffer could never arrive.
    return this.inflightBytes === 0 || this.inflightBytes + size <= this.bufferBytes;
  }
}

/** A push delivery: a small per-subscriber envelope; payload and headers are shared, never copied. */
export class PushDelivery implements Delivery {
  readonly deliveryCount = 1;
  readonly group = undefined;
  readonly offset: number | undefined;
  readonly timestamp: number;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly value: Buffer;
  // #private: not enumerable, so encoding or spreading a delivery never drags the subscriber along.
  #subscriber: PushSubscriber | undefined;
  readonly #size: number;

  constructor(
    readonly id: number,
    readonly topic: string,
    m: OutMessage,
    subscriber: PushSubscriber,
    size: number,
  ) {
    this.#subscriber = subscriber;
    this.#size = size;
    this.offset = m.offset;
    this.timestamp = m.timestamp;
    this.key = m.key;
    this.headers = m.headers;
    this.value = m.value;
  }

  /** Frees its bytes in the subscriber's buffer, once. */
  settle(): void {
    const sub = this.#subscriber;
    if (!sub) return;
    this.#subscriber = undefined;
    sub.inflightBytes -= this.#size;
  }
}

/** Members of one (pattern, queue) group; each message goes to one, round robin. */
export class QueueGroup {
  readonly members: PushSubscriber[] = [];
  private next = 0;

  constructor(
    readonly pattern: string,
    readonly queue: string,
  ) {}

  /** The next member with room for a delivery of `bytes`, or the round-robin one (which will then drop). */
  pick(bytes: number): PushSubscriber | undefined {
    const n = this.members.length;
    if (n === 0) return undefined;
    const start = this.next % n;
    for (let i = 0; i < n; i++) {
      const m = this.members[(start + i) % n];
      if (m.hasRoom(bytes + m.overhead)) {
        this.next = (start + i + 1) % n;
        return m;
      }
    }
    this.next = (start + 1) % n;
    return this.members[start];
  }
}

type Target = PushSubscriber | QueueGroup;

/**
 * Push fan-out: subscriptions indexed in a pattern trie (matched once per
 * published batch), queue groups, bounded per-subscriber buffers.
 */
export class Dispatcher {
  private readonly trie = new PatternTrie<Target>();
  private readonly queues = new Map<string, QueueGroup>();
  private readonly warnings: RateLimitedWarnings;
  private seq = 0;
  private count = 0;

  constructor(
    private readonly stats: BrokerStats,
    private readonly logger: BrokerLogger,
    private readonly defaultBufferBytes: number,
  ) {
    this.warnings = new RateLimitedWarnings(logger);
  }

  subscribe(spec: SubscribeSpec, owner: string, onMessage: (d: Delivery) => void): PushSubscriber {
    if (spec === null || typeof spec !== 'object') throw new LogBusError('INVALID_ARGUMENT', 'subscribe needs a { pattern, queue?, bufferBytes? } spec');
    validatePattern(spec.pattern);
    if (spec.queue !== undefined && (typeof spec.queue !== 'string' || spec.queue.length === 0 || spec.queue.length > 249)) {
      throw new LogBusError('INVALID_ARGUMENT', `queue ${JSON.stringify(spec.queue)} must be a non-empty string of at most 249 characters`);
    }
    if (typeof onMessage !== 'function') throw new LogBusError('INVALID_ARGUMENT', 'subscribe needs a message callback');
    const bufferBytes = spec.bufferBytes === undefined ? this.defaultBufferBytes : positiveInt(spec.bufferBytes, 'bufferBytes');
    const overhead = spec.heldBytesPerMessage === undefined ? DELIVERY_OVERHEAD : positiveInt(spec.heldBytesPerMessage, 'heldBytesPerMessage');
    if (this.count >= MAX_SUBSCRIPTIONS) throw new LogBusError('INVALID_ARGUMENT', `too many subscriptions (limit ${MAX_SUBSCRIPTIONS})`);
    const id = `${spec.pattern}${spec.queue !== undefined ? `#${spec.queue}` : ''}@${owner}.${++this.seq}`;
    if (spec.onRaw !== undefined && typeof spec.onRaw !== 'function') throw new LogBusError('INVALID_ARGUMENT', 'onRaw must be a function');
    const sub = new PushSubscriber(id, spec.pattern, spec.queue, bufferBytes, onMessage, overhead, spec.onRaw);
    if (spec.queue === undefined) {
      this.trie.add(spec.pattern, sub);
    } else {
      const k = `${spec.pattern}\u0000${spec.queue}`;
      let g = this.queues.get(k);
      if (!g) {
        g = new QueueGroup(spec.pattern, spec.queue);
        this.queues.set(k, g);
        this.trie.add(spec.pattern, g);
      }
      g.members.push(sub);
      sub.group = g;
    }
    this.count++;
    return sub;
  }

  unsubscribe(sub: PushSubscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    this.count--;
    const g = sub.group;
    if (!g) {
      this.trie.remove(sub.pattern, sub);
      return;
    }
    const i = g.members.indexOf(sub);
    if (i >= 0) g.members.splice(i, 1);
    if (g.members.length === 0) {
      this.queues.delete(`${g.pattern}\u0000${g.queue}`);
      this.trie.remove(g.pattern, g);
    }
  }

  /** The handler is finished with a delivery: frees its bytes. Idempotent. */
  done(d: Delivery): void {
    if (d instanceof PushDelivery) d.settle();
  }

  /** Frees the charges of messages a raw subscriber (SubscribeSpec.onRaw) has finished. */
  free(sub: PushSubscriber, bytes: number): void {
    sub.inflightBytes = Math.max(0, sub.inflightBytes - bytes);
  }

  /** Fans a batch published to one topic out to every matching subscriber. */
  publish(topic: string, messages: OutMessage[]): void {
    if (this.count === 0) return;
    const targets: Target[] = [];
    this.trie.match(topic, t => targets.push(t));
    if (targets.length === 0) return;
    for (const m of messages) {
      const bytes = deliveryBytes(topic, m);
      for (const t of targets) {
        const sub = t instanceof QueueGroup ? t.pick(bytes) : t;
        if (sub && !sub.closed) this.deliver(topic, m, sub, bytes + sub.overhead);
      }
    }
  }

  private deliver(topic: string, m: OutMessage, sub: PushSubscriber, size: number): void {
    if (!sub.hasRoom(size)) {
      this.stats.drop(sub.statId);
      this.warnings.warn(sub.statId, sub.describeDrops);
      return;
    }
    sub.inflightBytes += size;
    this.stats.delivered++;
    try {
      if (sub.onRaw) sub.onRaw(topic, m, sub.nextId++, size);
      else sub.onMessage(new PushDelivery(sub.nextId++, topic, m, sub, size));
    } catch (e) {
      this.logger.error(`push handler of ${sub.statId} threw: ${(e as Error)?.message ?? e}`);
    }
  }
}
