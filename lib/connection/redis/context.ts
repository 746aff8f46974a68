import type { ResolvedOptions, ResolvedTopicConfig } from '../../options.js';
import type { BusStats, OutgoingMessage, ProduceResult } from '../types.js';
import type { RedisClient } from './client.js';
import type { GroupEvents } from './group-events.js';
import type { RedisKeys } from './keys.js';

export interface DriverLogger {
  warn(message: string): void;
  error(message: string): void;
}

export const consoleDriverLogger: DriverLogger = {
  warn: m => console.warn(`[logbus:redis] ${m}`),
  error: m => console.error(`[logbus:redis] ${m}`),
};

type Counter = 'published' | 'delivered' | 'redelivered' | 'deadLettered';

/** How long a batch of counter increments waits before it is written (drops and failures go at once). */
const FLUSH_MS = 20;
const MAX_DROP_KEYS = 10_000;
/** The dropped-per-subscriber hash expires this long after its last change (subscriber ids die with their processes). */
const DROPPED_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * stats() on Redis is bus-wide, like the shared broker's: every connection adds
 * its increments to `P:stats` (batched every FLUSH_MS; drops, redeliveries and
 * dead letters at the end of the current turn) and stats() reads the sum.
 */
export class DriverStats {
  private readonly pending: Record<Counter, number> = { published: 0, delivered: 0, redelivered: 0, deadLettered: 0 };
  private readonly pendingDropped = new Map<string, number>();
  /** local totals per subscriber, for the warning text */
  private readonly localDropped = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private soon = false;
  private target: { main: RedisClient; keys: RedisKeys } | undefined;

  attach(main: RedisClient, keys: RedisKeys): void {
    this.target = { main, keys };
  }

  add(counter: Counter, n = 1): void {
    this.pending[counter] += n;
    this.schedule(counter === 'redelivered' || counter === 'deadLettered');
  }

  /** Counts a drop; returns this process's total for the subscriber. */
  drop(subscriberId: string): number {
    this.pendingDropped.set(subscriberId, (this.pendingDropped.get(subscriberId) ?? 0) + 1);
    const n = (this.localDropped.get(subscriberId) ?? 0) + 1;
    if (!this.localDropped.has(subscriberId) && this.localDropped.size >= MAX_DROP_KEYS) {
      this.localDropped.delete(this.localDropped.keys().next().value as string);
    }
    this.localDropped.set(subscriberId, n);
    this.schedule(true);
    return n;
  }

  private schedule(now: boolean): void {
    if (now && !this.soon) {
      this.soon = true;
      setImmediate(() => {
        this.soon = false;
        void this.flush().catch(() => undefined);
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush().catch(() => undefined);
      }, FLUSH_MS);
    }
  }

  /** Sends the increments not yet written (on the main connection, so later commands see them). */
  flush(): Promise<unknown> {
    const t = this.target;
    if (!t) return Promise.resolve();
    const writes: Promise<unknown>[] = [];
    for (const k of Object.keys(this.pending) as Counter[]) {
      if (this.pending[k] === 0) continue;
      writes.push(t.main.call('HINCRBY', t.keys.stats, k, this.pending[k]));
      this.pending[k] = 0;
    }
    if (this.pendingDropped.size > 0) {
      for (const [id, n] of this.pendingDropped) writes.push(t.main.call('HINCRBY', t.keys.droppedStats, id, n));
      writes.push(t.main.call('PEXPIRE', t.keys.droppedStats, DROPPED_TTL_MS));
      this.pendingDropped.clear();
    }
    return Promise.all(writes);
  }

  async snapshot(): Promise<BusStats> {
    const t = this.target;
    if (!t) throw new Error('stats before connect');
    void this.flush().catch(() => undefined);
    const [totals, dropped] = (await Promise.all([t.main.call('HGETALL', t.keys.stats), t.main.call('HGETALL', t.keys.droppedStats)])) as unknown[];
    const m = toMap(totals);
    return {
      published: Number(m.published ?? 0),
      delivered: Number(m.delivered ?? 0),
      dropped: Object.fromEntries(Object.entries(toMap(dropped)).map(([k, v]) => [k, Number(v)])),
      redelivered: Number(m.redelivered ?? 0),
      deadLettered: Number(m.deadLettered ?? 0),
    };
  }

  /** Writes what is left; no more timers. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush().catch(() => undefined);
    this.target = undefined;
  }
}

function toMap(reply: unknown): Record<string, string> {
  if (Array.isArray(reply)) {
    const out: Record<string, string> = {};
    for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
    return out;
  }
  return (reply ?? {}) as Record<string, string>;
}

/** What the driver's parts share: one per RedisConnection. */
export interface DriverContext {
  readonly options: ResolvedOptions;
  readonly keys: RedisKeys;
  /** Commands that never block (auto-pipelined). */
  readonly main: RedisClient;
  readonly stats: DriverStats;
  readonly logger: DriverLogger;
  /** Random per connection: names consumers, queue members and the reply channel. */
  readonly instanceId: string;
  configFor(topic: string): Promise<ResolvedTopicConfig>;
  produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]>;
  readonly groupEvents: GroupEvents;
  /** Redis Cluster (no CLIENT UNBLOCK across nodes; sharded channels for RPC liveness) */
  readonly cluster: boolean;
  /** A new connection to the same Redis (for blocking reads), connected. */
  openClient(name: string): Promise<RedisClient>;
}
