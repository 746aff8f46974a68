/**
 * pull on Redis Streams consumer groups, one RedisConsumer per consume().
 *
 * - Reads: XREADGROUP … BLOCK on a connection of its own, only as many as it has
 *   room for (concurrency), so the rest stays in Redis for the group's other members.
 * - Acks: XACK after the handler, batched per turn of the event loop; flushed on close.
 * - Failure: nack keeps the message in this member's pending list; after the
 *   backoff it is XCLAIMed back (which counts a delivery) and run again; after
 *   maxDeliver deliveries it goes to the dead-letter topic, then XACK.
 * - ackWaitMs: messages pending longer are XCLAIMed (XPENDING IDLE, then XCLAIM
 *   with the same min-idle, so two members never both take one). Not XAUTOCLAIM:
 *   XPENDING also gives the delivery counts and owners, and a member leaves its
 *   own stuck messages to the others while others are live.
 * - Members: a zset of live members with heartbeats (`P:{t:T}:m:<group>`). The
 *   pending messages of a group consumer that is not live are taken over by a
 *   live member in one script (SWEEP): at once when the member closes (it says
 *   so on the group's event channel), within MEMBER_TTL_MS when it dies. Never
 *   waiting for ackWaitMs. Messages this member holds without running them
 *   (waiting for their key, or in backoff) are touched (XCLAIM JUSTID: idle
 *   reset, no delivery counted) so ackWaitMs does not take them away.
 * - Key order: the produce script stores, with each keyed message, the previous
 *   offset whose key fell in the same bucket (4096 buckets). A message runs only
 *   once that previous one is acked by the group: held here until its local
 *   predecessor is acked, or until XPENDING shows the predecessor is no longer
 *   pending anywhere in the group (polled from 5 ms up to 200 ms). Same-key
 *   messages therefore run in publish order and never two at once, across
 *   instances; keys sharing a bucket are ordered together, which costs some
 *   parallelism, never correctness.
 */
import type { ConsumeSpec, Consumer, Delivery } from '../types.js';
import { asBusError, sleep, trackClientId, type RedisClient } from './client.js';
import { fromArgs } from './consume-spec.js';
import type { DriverContext } from './context.js';
import type { GroupListener } from './group-events.js';
import { idOf } from './keys.js';
import { CREATE_GROUP, HEARTBEAT, SWEEP } from './scripts.js';
import { parseStreamEntry, type RawEntry, type StreamEntry } from './stream-entry.js';

const READ_BATCH = 128;
/** Also how soon a resetGroup reaches a consumer blocked on an idle topic. */
const BLOCK_MS = 1000;
export const MEMBER_HEARTBEAT_MS = 1000;
export const MEMBER_TTL_MS = 3000;
const CLAIM_BATCH = 100;
const MAX_ERROR_CHARS = 1024;

type State = 'waiting' | 'running' | 'backoff' | 'done';

/** A message this member has read or claimed and not yet acked. */
interface Held extends StreamEntry {
  readonly streamId: string;
  deliveries: number;
  deliveryId: number;
  state: State;
  touchedAt: number;
  timer: NodeJS.Timeout | undefined;
}

class PullDelivery implements Delivery {
  constructor(
    readonly id: number,
    readonly topic: string,
    readonly group: string,
    private readonly h: Held,
    readonly deliveryCount: number,
  ) {}
  get offset() {
    return this.h.offset;
  }
  get timestamp() {
    return this.h.timestamp;
  }
  get key() {
    return this.h.key;
  }
  get headers() {
    return this.h.headers;
  }
  get value() {
    return this.h.value;
  }
}

let consumerCount = 0;

export class RedisConsumer implements Consumer, GroupListener {
  private readonly name: string;
  private readonly logKey: string;
  private readonly metaKey: string;
  private readonly membersKey: string;
  private readonly holdLimit: number;
  private readonly tickMs: number;
  private readonly held = new Map<string, Held>();
  private readonly byDelivery = new Map<number, Held>();
  /** stream id of a locally held predecessor → messages waiting for it */
  private readonly waitingOn = new Map<string, Held[]>();
  /** waiting for a predecessor held elsewhere in the group */
  private readonly waitingRemote = new Set<Held>();
  private readonly ready: Held[] = [];
  /** delivery id → stream id of deliveries taken back by ackWaitMs while still running here */
  private readonly abandoned = new Map<number, string>();
  private running = 0;
  private nextDeliveryId = 1;
  private paused = false;
  private closed = false;
  private blocking: RedisClient | undefined;
  private blockingId: string | undefined;
  private reader: Promise<void> | undefined;
  private wakeReader: (() => void) | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private remoteTimer: NodeJS.Timeout | undefined;
  private remoteDelay = 5;
  private ticking = false;
  private lastBeat = 0;
  private lastClaim = 0;
  private live: string[] = [];
  private acks: string[] = [];
  private ackFlush: Promise<void> | undefined;

  constructor(
    private readonly ctx: DriverContext,
    private readonly spec: ConsumeSpec,
    private readonly onMessage: (d: Delivery) => void,
  ) {
    this.name = `${ctx.instanceId}.${++consumerCount}`;
    this.logKey = ctx.keys.log(spec.topic);
    this.metaKey = ctx.keys.meta(spec.topic);
    this.membersKey = ctx.keys.groupMembers(spec.topic, spec.group);
    this.holdLimit = Math.min(8192, Math.max(256, spec.concurrency * 8));
    this.tickMs = Math.min(500, Math.max(20, Math.floor(spec.ackWaitMs / 3)));
  }

  async start(): Promise<void> {
    try {
      await this.ensureGroup();
      await this.heartbeat();
      await this.ctx.groupEvents.join(this.spec.topic, this.spec.group, this);
      const blocking = await this.ctx.openClient(`consume ${this.spec.topic}/${this.spec.group}`);
      this.blocking = blocking;
      await trackClientId(blocking, this.ctx.cluster, id => (this.blockingId = id));
    } catch (e) {
      await this.close();
      throw asBusError(e, `consume '${this.spec.topic}'`);
    }
    this.reader = this.readLoop(this.blocking);
    this.ticker = setInterval(() => void this.tick(), this.tickMs);
  }

  ack(d: Delivery): void {
    const h = this.finish(d, true);
    if (!h) return;
    this.queueAck(h.streamId);
    this.release(h);
    this.pump();
  }

  nack(d: Delivery, error: string): void {
    const h = this.finish(d, false);
    if (!h) return;
    if (h.deliveries >= this.spec.maxDeliver) {
      void this.deadLetter(h, error);
    } else if (this.closed) {
      this.release(h); // stays pending in Redis: a live member claims it
    } else {
      const b = this.spec.backoffMs;
      const delay = b.length === 0 ? 0 : b[Math.min(h.deliveries - 1, b.length - 1)];
      h.state = 'backoff';
      h.touchedAt = Date.now();
      this.held.set(h.streamId, h);
      h.timer = setTimeout(() => void this.retry(h), delay);
    }
    this.pump();
  }

  pause(): void {
    this.paused = true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.paused = true;
    if (this.ticker) clearInterval(this.ticker);
    if (this.remoteTimer) clearTimeout(this.remoteTimer);
    for (const h of this.held.values()) if (h.timer) clearTimeout(h.timer);
    this.wakeReader?.();
    this.blocking?.disconnect(false);
    await this.reader?.catch(() => undefined);
    await this.flushAcks().catch(() => undefined);
    // no longer live: the group's other members take over whatever is still pending here, told at once
    await this.ctx.groupEvents.leave(this.spec.topic, this.spec.group, this);
    await HEARTBEAT.run(this.ctx.main, [this.membersKey], [this.name, MEMBER_TTL_MS, '1']).catch(() => undefined);
    await this.ctx.groupEvents.announce(this.spec.topic, this.spec.group, 'left').catch(() => undefined);
  }

  // ---- reading and running ----

  private async ensureGroup(): Promise<void> {
    const [mode, value] = fromArgs(this.spec.from);
    await CREATE_GROUP.run(this.ctx.main, [this.logKey, this.metaKey], [this.spec.group, mode, value]);
  }

  private room(): number {
    if (this.paused) return 0;
    return Math.min(READ_BATCH, this.spec.concurrency - this.running - this.ready.length, this.holdLimit - this.held.size);
  }

  private async readLoop(blocking: RedisClient): Promise<void> {
    while (!this.closed) {
      const room = this.room();
      if (room <= 0) {
        await new Promise<void>(r => (this.wakeReader = r));
        this.wakeReader = undefined;
        continue;
      }
      try {
        const reply = (await blocking.callBuffer(
          'XREADGROUP', 'GROUP', this.spec.group, this.name, 'COUNT', room, 'BLOCK', BLOCK_MS, 'STREAMS', this.logKey, '>',
        )) as [Buffer, RawEntry[]][] | null;
        for (const [, entries] of reply ?? []) for (const e of entries) this.admit(e, 1);
      } catch (e) {
        if (this.closed) return;
        const msg = (e as Error)?.message ?? String(e);
        if (msg.includes('NOGROUP')) {
          // the stream or group is gone (Redis restarted without persistence, key deleted): make it again
          await this.ensureGroup().catch(() => undefined);
        } else {
          this.ctx.logger.warn(`consumer ${this.spec.topic}/${this.spec.group}: ${msg}; retrying`);
          await sleep(200);
        }
      }
    }
  }

  private wake(): void {
    if (this.wakeReader && this.room() > 0) this.wakeReader();
  }

  /** A message read or claimed: run it, hold it for its key, or dead-letter it. */
  private admit(raw: RawEntry, deliveries: number): void {
    const [idBuf, fields] = raw;
    if (!fields) return; // deleted (trimmed) while pending
    const streamId = idBuf.toString();
    const existing = this.held.get(streamId);
    if (existing && existing.state !== 'running') {
      existing.deliveries = Math.max(existing.deliveries, deliveries);
      return;
    }
    if (existing) this.abandon(existing);
    let h: Held;
    try {
      h = { ...parseStreamEntry(idBuf, fields), streamId, deliveries, deliveryId: 0, state: 'waiting', touchedAt: Date.now(), timer: undefined };
    } catch (e) {
      this.ctx.logger.error(`consumer ${this.spec.topic}/${this.spec.group}: skipping damaged message ${streamId}: ${(e as Error).message}`);
      this.queueAck(streamId);
      return;
    }
    this.held.set(streamId, h);
    if (deliveries > this.spec.maxDeliver) {
      void this.deadLetter(h, `not acked within ackWaitMs (${this.spec.ackWaitMs} ms)`);
      return;
    }
    if (h.prev !== undefined) {
      const prevId = idOf(h.prev);
      const prev = this.held.get(prevId);
      if (prev && prev.state !== 'done') {
        const list = this.waitingOn.get(prevId);
        if (list) list.push(h);
        else this.waitingOn.set(prevId, [h]);
        return;
      }
      this.waitingRemote.add(h);
      this.remoteDelay = 5;
      if (!this.remoteTimer) this.remoteTimer = setTimeout(() => void this.checkRemote(), 0);
      return;
    }
    this.ready.push(h);
    this.pump();
  }

  private pump(): void {
    while (!this.paused && this.running < this.spec.concurrency && this.ready.length > 0) {
      const h = this.ready.shift()!;
      if (h.state === 'done' || this.held.get(h.streamId) !== h) continue;
      this.run(h);
    }
    this.wake();
  }

  private run(h: Held): void {
    h.state = 'running';
    this.running++;
    const id = this.nextDeliveryId++;
    h.deliveryId = id;
    this.byDelivery.set(id, h);
    this.ctx.stats.add('delivered');
    if (h.deliveries > 1) this.ctx.stats.add('redelivered');
    const d = new PullDelivery(id, this.spec.topic, this.spec.group, h, h.deliveries);
    try {
      this.onMessage(d);
    } catch (e) {
      this.nack(d, (e as Error)?.message ?? String(e));
    }
  }

  /**
   * Our own running message came back by ackWaitMs (no other member is live):
   * the old delivery no longer holds a slot; its late ack still acks the message.
   */
  private abandon(h: Held): void {
    if (!this.byDelivery.delete(h.deliveryId)) return;
    this.running--;
    h.state = 'done';
    this.abandoned.set(h.deliveryId, h.streamId);
    if (this.abandoned.size > this.holdLimit) this.abandoned.delete(this.abandoned.keys().next().value as number);
  }

  /** The delivery's handler is finished with it: free its slot. */
  private finish(d: Delivery, acked: boolean): Held | undefined {
    const stale = this.abandoned.get(d.id);
    if (stale !== undefined) {
      this.abandoned.delete(d.id);
      if (acked) this.queueAck(stale); // done after all: the redelivery's own ack is then a no-op
      return undefined;
    }
    const h = this.byDelivery.get(d.id);
    if (!h) return undefined;
    this.byDelivery.delete(d.id);
    this.running--;
    h.state = 'done';
    if (this.held.get(h.streamId) === h) this.held.delete(h.streamId);
    return h;
  }

  /** h is acked (or gone): messages of the same key bucket waiting for it may run. */
  private release(h: Held): void {
    if (this.held.get(h.streamId) === h) this.held.delete(h.streamId);
    const waiting = this.waitingOn.get(h.streamId);
    if (!waiting) return;
    this.waitingOn.delete(h.streamId);
    for (const w of waiting) if (this.held.get(w.streamId) === w && w.state === 'waiting') this.ready.push(w);
  }

  private async retry(h: Held): Promise<void> {
    h.timer = undefined;
    if (this.closed || this.held.get(h.streamId) !== h) return;
    try {
      // claiming it back counts the delivery in Redis's pending list
      const got = (await this.ctx.main.callBuffer('XCLAIM', this.logKey, this.spec.group, this.name, 0, h.streamId)) as RawEntry[];
      if (this.closed || this.held.get(h.streamId) !== h) return;
      if (!got || got.length === 0 || !got[0][1]) {
        this.release(h); // acked elsewhere, trimmed, or the group was reset
        this.pump();
        return;
      }
      h.deliveries++;
      h.state = 'waiting';
      this.ready.push(h);
      this.pump();
    } catch (e) {
      if (this.closed) return;
      h.timer = setTimeout(() => void this.retry(h), 500);
    }
  }

  private async deadLetter(h: Held, error: string): Promise<void> {
    h.state = 'done';
    const { topic } = this.spec;
    try {
      if (this.spec.deadLetter !== false) {
        await this.ctx.produce(this.spec.deadLetter, [
          {
            value: h.value,
            key: h.key,
            headers: {
              ...h.headers,
              'x-logbus-topic': topic,
              'x-logbus-offset': String(h.offset),
              'x-logbus-error': error.slice(0, MAX_ERROR_CHARS),
              'x-logbus-deliveries': String(h.deliveries),
            },
          },
        ]);
      } else {
        this.ctx.logger.warn(`dropped message ${topic}@${h.offset} for group '${this.spec.group}' after ${h.deliveries} deliveries: ${error}`);
      }
      this.ctx.stats.add('deadLettered');
      this.queueAck(h.streamId);
    } catch (e) {
      // left pending: it comes back by ackWaitMs and is dead-lettered then
      this.ctx.logger.error(`could not dead-letter ${topic}@${h.offset} to '${this.spec.deadLetter}': ${(e as Error)?.message ?? e}`);
    }
    this.release(h);
    this.pump();
  }

  // ---- acks ----

  private queueAck(streamId: string): void {
    this.acks.push(streamId);
    if (this.acks.length === 1) setImmediate(() => void this.flushAcks().catch(e => this.ctx.logger.warn(`ack failed: ${(e as Error)?.message ?? e}`)));
  }

  private async flushAcks(): Promise<void> {
    await this.ackFlush;
    if (this.acks.length === 0) return;
    const ids = this.acks;
    this.acks = [];
    this.ackFlush = (async () => {
      for (let i = 0; i < ids.length; i += 1000) {
        await this.ctx.main.call('XACK', this.logKey, this.spec.group, ...ids.slice(i, i + 1000));
      }
    })();
    try {
      await this.ackFlush;
    } finally {
      this.ackFlush = undefined;
    }
  }

  // ---- periodic work: touches, key checks, heartbeats, claims ----

  private async tick(): Promise<void> {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      const now = Date.now();
      await this.touchHeld(now);
      if (now - this.lastBeat >= MEMBER_HEARTBEAT_MS) {
        await this.heartbeat();
        await this.claimFromDead();
      }
      if (now - this.lastClaim >= Math.min(this.spec.ackWaitMs / 2, 1000)) {
        this.lastClaim = now;
        await this.claimExpired();
      }
    } catch (e) {
      if (!this.closed) this.ctx.logger.warn(`consumer ${this.spec.topic}/${this.spec.group}: ${(e as Error)?.message ?? e}`);
    } finally {
      this.ticking = false;
    }
  }

  private async touchHeld(now: number): Promise<void> {
    const due: Held[] = [];
    for (const h of this.held.values()) {
      if ((h.state === 'waiting' || h.state === 'backoff') && now - h.touchedAt >= this.spec.ackWaitMs / 3) due.push(h);
    }
    for (let i = 0; i < due.length; i += 500) {
      const batch = due.slice(i, i + 500);
      await this.ctx.main.call('XCLAIM', this.logKey, this.spec.group, this.name, 0, ...batch.map(h => h.streamId), 'JUSTID');
      for (const h of batch) h.touchedAt = now;
    }
  }

  private async heartbeat(): Promise<void> {
    this.lastBeat = Date.now();
    this.live = (await HEARTBEAT.run(this.ctx.main, [this.membersKey], [this.name, MEMBER_TTL_MS, '0'])) as string[];
  }

  /**
   * Is the predecessor of each remotely-waiting message still pending in the
   * group? Polled while anything waits: from 5 ms, doubling to 200 ms while
   * nothing moves, back to 5 ms once something does.
   */
  private async checkRemote(): Promise<void> {
    if (this.remoteTimer) {
      clearTimeout(this.remoteTimer);
      this.remoteTimer = undefined;
    }
    const list = [...this.waitingRemote];
    let moved = false;
    try {
      const pending = await Promise.all(
        list.map(h => this.ctx.main.call('XPENDING', this.logKey, this.spec.group, idOf(h.prev!), idOf(h.prev!), 1) as Promise<unknown[]>),
      );
      list.forEach((h, i) => {
        if (!this.waitingRemote.has(h) || pending[i].length > 0) return;
        this.waitingRemote.delete(h);
        moved = true;
        if (this.held.get(h.streamId) === h && h.state === 'waiting') this.ready.push(h);
      });
    } catch (e) {
      if (!this.closed) this.ctx.logger.warn(`consumer ${this.spec.topic}/${this.spec.group}: ${(e as Error)?.message ?? e}`);
    }
    this.pump();
    this.remoteDelay = moved ? 5 : Math.min(200, this.remoteDelay * 2);
    if (this.waitingRemote.size > 0 && !this.closed && !this.remoteTimer) {
      this.remoteTimer = setTimeout(() => void this.checkRemote(), this.remoteDelay);
    }
  }

  /** Pending messages of group consumers that are no longer live (died, or closed): take them now. */
  private async claimFromDead(): Promise<void> {
    if (this.paused || this.closed) return;
    const room = Math.min(CLAIM_BATCH, this.holdLimit - this.held.size);
    if (room <= 0) return;
    const [entries, counts] = (await SWEEP.run(this.ctx.main, [this.logKey, this.membersKey], [this.spec.group, this.name, room], true)) as [
      RawEntry[],
      unknown[],
    ];
    entries.forEach((e, i) => this.admit(e, Number(counts[i] ?? 0) + 1));
  }

  /** A member left or the group was reset: act now rather than at the next heartbeat or poll. */
  onGroupEvent(kind: string): void {
    if (this.closed) return;
    if (kind === 'reset' && this.blockingId) {
      void this.ctx.main.call('CLIENT', 'UNBLOCK', this.blockingId).catch(() => undefined);
    }
    if (kind === 'left') void this.claimFromDead().catch(() => undefined);
  }

  /** Messages pending longer than ackWaitMs: delivered again (to another member while one is live). */
  private async claimExpired(): Promise<void> {
    if (this.paused || this.held.size >= this.holdLimit) return;
    const idle = Math.floor(this.spec.ackWaitMs);
    const pending = (await this.ctx.main.call(
      'XPENDING', this.logKey, this.spec.group, 'IDLE', idle, '-', '+', CLAIM_BATCH,
    )) as [string, string, number, number][];
    let others = this.live.some(n => n !== this.name);
    if (!others && pending.some(([id, owner]) => owner === this.name && this.held.has(id))) {
      await this.heartbeat(); // about to take back our own: make sure nobody else joined meanwhile
      others = this.live.some(n => n !== this.name);
    }
    await this.claim(
      pending.filter(([id, owner]) => owner !== this.name || !others || !this.held.has(id)),
      idle,
    );
  }

  private async claim(pending: [string, string, number, number][], minIdle: number): Promise<void> {
    const room = this.holdLimit - this.held.size;
    const take = pending.slice(0, Math.max(0, room));
    if (take.length === 0 || this.closed) return;
    const counts = new Map(take.map(([id, , , n]) => [id, Number(n)]));
    const got = (await this.ctx.main.callBuffer(
      'XCLAIM', this.logKey, this.spec.group, this.name, minIdle, ...take.map(p => p[0]),
    )) as RawEntry[];
    for (const e of got) {
      if (!e || !e[1]) continue;
      const id = e[0].toString();
      this.admit(e, (counts.get(id) ?? 0) + 1);
    }
  }
}
