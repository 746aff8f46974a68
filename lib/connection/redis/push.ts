/**
 * push on Redis pub/sub, over one subscriber connection per RedisConnection.
 *
 * - An exact pattern SUBSCRIBEs `P:p:<topic>`; a wildcard pattern PSUBSCRIBEs a
 *   glob (`orders.*` and `orders.>` → `P:p:orders.*`). Redis globs cross dots, so
 *   every delivery is filtered again with matchPattern (`orders.*` never gets `orders.a.b`).
 * - Each Redis message (a batch of one produce, or of several coalesced ones) is
 *   decoded once and shared by the local subscribers it matches.
 * - Bounded buffer per subscriber: bytes handed out and not yet done(); past it the
 *   message is dropped for that subscriber, counted and warned about.
 * - Queue groups: every member receives every message and keeps the ones whose
 *   (seq + topic hash) mod memberCount is its own rank among the live members
 *   (a zset with heartbeats, `P:q:<pattern>#<queue>`). seq is a per-topic counter
 *   set by Redis, so this is round robin while membership is stable. While it
 *   changes (until every member has seen the change: at once on a clean
 *   join/leave, which is announced on `P:qc`; up to MEMBER_TTL_MS when a member
 *   dies), a message may reach two members or none: push is at-most-once.
 * - Cluster: classic pub/sub, which Redis broadcasts to every node (sharded
 *   pub/sub has no pattern subscriptions, and wildcards are part of the contract).
 */
import { LogBusError } from '../../errors.js';
import { isWildcard, matchPattern, validatePattern } from '../../topic.js';
import type { Delivery, SubscribeSpec, Subscription } from '../types.js';
import { asBusError, type RedisClient } from './client.js';
import { decodePush, type Body, type PushBatch } from './codec.js';
import type { DriverContext } from './context.js';
import { HEARTBEAT } from './scripts.js';

const HEARTBEAT_MS = 1000;
const MEMBER_TTL_MS = 3000;
const MAX_OUTSTANDING = 100_000;

class PushDelivery implements Delivery {
  readonly deliveryCount = 1;
  readonly group = undefined;
  constructor(
    readonly id: number,
    readonly topic: string,
    readonly offset: number | undefined,
    readonly timestamp: number,
    private readonly body: Body,
  ) {}
  get key() {
    return this.body.key;
  }
  get headers() {
    return this.body.headers;
  }
  get value() {
    return this.body.value;
  }
}

class LocalSubscriber implements Subscription {
  outstanding = 0;
  readonly sizes = new Map<number, number>();
  nextId = 1;
  /** queue groups: my rank and the member count, from the last heartbeat */
  rank = 0;
  members = 1;
  closed = false;

  constructor(
    readonly hub: PushHub,
    readonly statsId: string,
    readonly pattern: string,
    readonly redisName: string,
    readonly isGlob: boolean,
    readonly queue: { key: string; member: string } | undefined,
    readonly bufferBytes: number,
    readonly onMessage: (d: Delivery) => void,
  ) {}

  done(d: Delivery): void {
    const size = this.sizes.get(d.id);
    if (size === undefined) return;
    this.sizes.delete(d.id);
    this.outstanding -= size;
  }

  unsubscribe(): Promise<void> {
    return this.hub.remove(this);
  }
}

export class PushHub {
  private readonly exact = new Map<string, Set<LocalSubscriber>>();
  private readonly globs = new Map<string, Set<LocalSubscriber>>();
  private readonly queued = new Set<LocalSubscriber>();
  private readonly subscribing = new Map<string, Promise<unknown>>();
  private heartbeat: NodeJS.Timeout | undefined;
  private count = 0;
  private warnedAt = new Map<string, number>();

  constructor(
    private readonly ctx: DriverContext,
    private readonly sub: RedisClient,
  ) {
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      const name = channel.toString();
      if (name === ctx.keys.queueChangedChannel) void this.refreshQueues();
      else this.onRedisMessage(this.exact.get(name), channel, message);
    });
    sub.on('pmessageBuffer', (pattern: Buffer, channel: Buffer, message: Buffer) =>
      this.onRedisMessage(this.globs.get(pattern.toString()), channel, message),
    );
  }

  async subscribe(spec: SubscribeSpec, onMessage: (d: Delivery) => void): Promise<Subscription> {
    validatePattern(spec.pattern);
    if (spec.queue !== undefined && (typeof spec.queue !== 'string' || spec.queue === '')) {
      throw new LogBusError('INVALID_ARGUMENT', `queue for '${spec.pattern}' must be a non-empty string`);
    }
    const bufferBytes = spec.bufferBytes ?? this.ctx.options.subscriberBufferBytes;
    const { keys, instanceId } = this.ctx;
    const glob = isWildcard(spec.pattern);
    const redisName = glob ? keys.pushGlob(spec.pattern) : keys.pushChannel(spec.pattern);
    const n = ++this.count;
    const base = spec.queue === undefined ? spec.pattern : `${spec.pattern}#${spec.queue}`;
    const queue = spec.queue === undefined ? undefined : { key: keys.queueMembers(spec.pattern, spec.queue), member: `${instanceId}.${n}` };
    const s = new LocalSubscriber(this, `${base}@${instanceId}.${n}`, spec.pattern, redisName, glob, queue, bufferBytes, onMessage);

    const map = glob ? this.globs : this.exact;
    for (;;) {
      let set = map.get(redisName);
      if (!set) {
        set = new Set();
        map.set(redisName, set);
        this.subscribing.set(redisName, glob ? this.sub.psubscribe(redisName) : this.sub.subscribe(redisName));
      }
      // live once Redis has confirmed the (p)subscription, even if another subscriber asked for it first
      try {
        await this.subscribing.get(redisName);
      } catch (e) {
        if (map.get(redisName) === set && set.size === 0) {
          map.delete(redisName);
          this.subscribing.delete(redisName);
        }
        throw asBusError(e, `subscribe '${spec.pattern}'`);
      }
      // the last subscriber left while we waited: subscribe again
      if (map.get(redisName) !== set) continue;
      set.add(s);
      break;
    }
    if (queue) {
      if (this.queued.size === 0) await this.sub.subscribe(keys.queueChangedChannel);
      this.queued.add(s);
      await this.beat(s, false);
      await this.ctx.main.call('PUBLISH', keys.queueChangedChannel, queue.key);
      this.heartbeat ??= setInterval(() => void this.refreshQueues(), HEARTBEAT_MS);
    }
    return s;
  }

  async remove(s: LocalSubscriber): Promise<void> {
    if (s.closed) return;
    s.closed = true;
    const map = s.isGlob ? this.globs : this.exact;
    const set = map.get(s.redisName);
    set?.delete(s);
    if (set && set.size === 0) {
      map.delete(s.redisName);
      this.subscribing.delete(s.redisName);
      await (s.isGlob ? this.sub.punsubscribe(s.redisName) : this.sub.unsubscribe(s.redisName)).catch(() => undefined);
    }
    if (s.queue) {
      this.queued.delete(s);
      await this.beat(s, true).catch(() => undefined);
      await this.ctx.main.call('PUBLISH', this.ctx.keys.queueChangedChannel, s.queue.key).catch(() => undefined);
      if (this.queued.size === 0 && this.heartbeat) {
        clearInterval(this.heartbeat);
        this.heartbeat = undefined;
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.exact.values(), ...this.globs.values()].flatMap(s => [...s]);
    await Promise.all(all.map(s => this.remove(s)));
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private async beat(s: LocalSubscriber, leave: boolean): Promise<void> {
    const q = s.queue!;
    const members = (await HEARTBEAT.run(this.ctx.main, [q.key], [q.member, MEMBER_TTL_MS, leave ? '1' : '0'])) as string[];
    if (leave) return;
    members.sort(); // by name: the zset's own order (expiry) differs between members' views
    const rank = members.indexOf(q.member);
    s.rank = rank < 0 ? 0 : rank;
    s.members = Math.max(1, members.length);
  }

  private async refreshQueues(): Promise<void> {
    await Promise.all([...this.queued].map(s => this.beat(s, false).catch(() => undefined)));
  }

  private onRedisMessage(subs: Set<LocalSubscriber> | undefined, channel: Buffer, message: Buffer): void {
    if (!subs || subs.size === 0) return;
    const topic = channel.toString('utf8', Buffer.byteLength(this.ctx.keys.pushChannelPrefix));
    let batch: PushBatch;
    try {
      batch = decodePush(message);
    } catch (e) {
      this.ctx.logger.error(`dropped a push message on '${topic}': ${(e as Error).message}`);
      return;
    }
    const spread = topicSpread(topic);
    for (const s of subs) {
      if (s.closed || !matchPattern(s.pattern, topic)) continue;
      batch.bodies.forEach((body, i) => {
        if (s.queue && (batch.firstSeq + i + spread) % s.members !== s.rank) return;
        const size = body.value.length;
        // bytes bound the buffer; the count bounds it too, for empty messages never done()
        if ((s.outstanding + size > s.bufferBytes && s.outstanding > 0) || s.sizes.size >= MAX_OUTSTANDING) {
          this.drop(s, topic);
          return;
        }
        const id = s.nextId++;
        s.outstanding += size;
        s.sizes.set(id, size);
        this.ctx.stats.add('delivered');
        const offset = batch.firstOffset === undefined ? undefined : batch.firstOffset + i;
        try {
          s.onMessage(new PushDelivery(id, topic, offset, batch.timestamp, body));
        } catch (e) {
          this.ctx.logger.error(`a push handler for '${s.pattern}' threw: ${(e as Error)?.message ?? e}`);
        }
      });
    }
  }

  private drop(s: LocalSubscriber, topic: string): void {
    const total = this.ctx.stats.drop(s.statsId);
    const now = Date.now();
    if (now - (this.warnedAt.get(s.statsId) ?? 0) >= 5000) {
      if (this.warnedAt.size > 10_000) this.warnedAt.clear();
      this.warnedAt.set(s.statsId, now);
      this.ctx.logger.warn(
        `subscriber '${s.statsId}' is too slow: its buffer of ${s.bufferBytes} bytes is full, dropping messages on '${topic}' ` +
          `(${total} dropped so far)`,
      );
    }
  }
}

/** Spreads topics so that members of a queue group on a wildcard start at different ranks. */
function topicSpread(topic: string): number {
  let h = 0;
  for (let i = 0; i < topic.length; i++) h = (h * 31 + topic.charCodeAt(i)) >>> 0;
  return h % 9973;
}
