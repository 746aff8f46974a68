import { performance } from 'node:perf_hooks';
import type { ConsumeSpec, Consumer, Delivery } from '../connection/types.js';
import type { LogRecord, TopicLog } from '../store/types.js';
import { IdTable } from '../id-table.js';
import { Deque } from './deque.js';
import type { BrokerLogger } from './logger.js';
import type { BrokerStats } from './stats.js';

/** Records fetched from the log per read. */
const FETCH_BATCH = 256;
/**
 * Most offsets tracked past the committed position (fetched, not yet acked in
 * order), like JetStream's max ack pending: it bounds memory when one message
 * is stuck in backoff while the rest of the group moves on.
 */
export const MAX_SPAN = 8192;
/** Keep at most this many fetched messages waiting for a free member. */
const READ_AHEAD = 1024;
/** Longest x-logbus-error header. */
const MAX_ERROR_CHARS = 1024;
/**
 * The persisted delivered-up-to mark is raised this far past the offset that
 * needs it (at least), so it costs one store write per ~this many deliveries.
 */
const RESERVE_AHEAD = 1024;
/**
 * The step grows 4x each time dispatch catches up with the written mark (a
 * fast consumer outruns one store write per 1024), up to this. It bounds how
 * many fetched but undelivered offsets a crash makes count as delivered once.
 */
const MAX_RESERVE_AHEAD = 65_536;
/** Most delivery counts persisted per group. */
const MAX_PERSISTED_COUNTS = 8192;

const enum State {
  Waiting, // fetched, queued or blocked behind its key
  InFlight,
  Backoff,
  DeadLettering,
  Done,
}

/** One fetched offset while the group still tracks it. */
interface Entry {
  readonly rec: LogRecord;
  deliveries: number;
  state: State;
  member: GroupMember | undefined;
  deliveryId: number;
  retryTimer: NodeJS.Timeout | undefined;
  /** Its count came from before a restart: the next one must be on disk before it is delivered. */
  restoredCount?: boolean;
  /** Count about to be delivered, reported to the store ahead of the delivery. */
  planned?: number;
  /** The delivery waits for the store write of this snapshot number. */
  waitSnapshot?: number;
}

interface AckDeadline {
  at: number;
  entry: Entry;
  id: number;
}

/** A delivery handed to a pull consumer (own properties, so spreading or encoding it loses nothing). */
export class PullDelivery implements Delivery {
  readonly offset: number;
  readonly timestamp: number;
  readonly key: string | undefined;
  readonly headers: Record<string, string>;
  readonly value: Buffer;

  constructor(
    readonly id: number,
    readonly topic: string,
    rec: LogRecord,
    readonly deliveryCount: number,
    readonly group: string,
  ) {
    this.offset = rec.offset;
    this.timestamp = rec.timestamp;
    this.key = rec.key;
    this.headers = rec.headers;
    this.value = rec.value;
  }
}

/** Delivery counts a group persisted (see GroupOffset.deliveredUpTo / deliveries). */
export interface SavedDeliveries {
  deliveredUpTo?: number;
  deliveries?: Array<[offset: number, count: number]>;
}

/** What a group needs from the broker: publishing dead letters and persisting its position. */
export interface GroupHost {
  readonly stats: BrokerStats;
  readonly logger: BrokerLogger;
  deadLetter(topic: string, rec: LogRecord, headers: Record<string, string>): Promise<unknown>;
  positionChanged(group: ConsumerGroup): void;
  /** Writes dirty positions now. */
  commit(): Promise<void>;
}

/** One consume() call: a member of its group. */
export class GroupMember implements Consumer {
  /** Deliveries not yet acked, by delivery id (per message: an IdTable, not a Map, see IdTable). */
  readonly inflight = new IdTable<Entry>();
  readonly deadlines = new Deque<AckDeadline>();
  nextId = 1;
  paused = false;
  closed = false;
  /** False until consume() has returned to its caller, so a delivery never beats the Consumer handle. */
  started = false;

  constructor(
    readonly group: ConsumerGroup,
    readonly spec: ConsumeSpec,
    readonly onMessage: (d: Delivery) => void,
    private readonly onClose: (m: GroupMember) => void,
  ) {}

  ack(d: Delivery): void {
    this.group.ack(this, d.id);
  }

  nack(d: Delivery, error: string): void {
    this.group.nack(this, d.id, String(error));
  }

  pause(): void {
    this.paused = true;
  }

  /** Leaves the group; resolves once the group's position (with this member's acks) is written. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.group.removeMember(this);
    this.onClose(this);
    await this.group.commit();
  }

  hasRoom(): boolean {
    return this.started && !this.paused && !this.closed && this.inflight.size < this.spec.concurrency;
  }
}

/**
 * A consumer group on one topic: a durable cursor, look-ahead from the log,
 * key-ordered parallel dispatch to its members, acks in any order,
 * redelivery (backoff, ack timeout, member gone) and dead letters.
 *
 * committedOffset is the first offset not yet acked in order. `outstanding`
 * holds every fetched entry in offset order; acked entries are popped from its
 * head, so advancing the position costs O(1) amortized per ack.
 */
export class ConsumerGroup {
  committedOffset: number;
  private readPos: number;
  private generation = 0;
  private readonly outstanding = new Deque<Entry>();
  /** Fresh messages ready to go. */
  private readonly ready = new Deque<Entry>();
  /** Redeliveries and messages unblocked by their key: go first. */
  private readonly retry = new Deque<Entry>();
  /** key → its outstanding entries in offset order; only the head may be in flight. */
  private readonly keys = new Map<string, Deque<Entry>>();
  readonly members: GroupMember[] = [];
  private rr = 0;
  private fetching = false;
  /**
   * The last read came back empty: appended records may not be readable yet
   * (not yet synced). Wait for wake(), which comes once they are, instead of
   * re-reading in a loop that would starve the event loop.
   */
  private caughtUp = false;
  /** Counts wake() calls, so a wake that lands during a read is not lost. */
  private wakes = 0;
  private pumping = false;
  private closed = false;
  private ackTimer: NodeJS.Timeout | undefined;
  private ackTimerAt = Infinity;
  private fetchRetryTimer: NodeJS.Timeout | undefined;
  /** Dead-letter publishes in flight: close() lets them finish so their acks are committed. */
  private readonly deadLettering = new Set<Promise<void>>();
  /*
   * Delivery counts that survive restarts. No offset >= deliveredHigh has been
   * handed to a member (in this run or, per the saved mark, before it). The
   * mark written to the store (reservedUpTo, durable once durableUpTo) stays
   * ahead of it: an offset is dispatched only below durableUpTo, so after a
   * crash every offset that may have been delivered is known to be.
   */
  private deliveredHigh: number;
  private reservedUpTo: number;
  private durableUpTo: number;
  private reserving = false;
  private reserveAhead = RESERVE_AHEAD;
  /** Dispatch is waiting for the mark: counted once per wait. */
  private stalled = false;
  private reserveRetryTimer: NodeJS.Timeout | undefined;
  /** Saved counts of offsets not yet fetched again; offsets below restoredUpTo missing here count 1. */
  private readonly restored = new Map<number, number>();
  private restoredUpTo: number;
  /** Number of deliveryState() snapshots taken, and the newest one known written. */
  snapshots = 0;
  private durableSnapshot = 0;

  constructor(
    readonly topic: string,
    readonly name: string,
    readonly log: TopicLog,
    start: number,
    private readonly host: GroupHost,
    saved?: SavedDeliveries,
  ) {
    this.committedOffset = start;
    this.readPos = start;
    const h = Math.max(start, saved?.deliveredUpTo ?? start);
    this.restoredUpTo = h;
    this.deliveredHigh = h;
    this.reservedUpTo = h;
    this.durableUpTo = h;
    for (const [o, c] of saved?.deliveries ?? []) if (o >= start && o < h) this.restored.set(o, c);
  }

  /** What to persist beside the position: the delivered-up-to mark and the counts that are not 1 below it. */
  deliveryState(): { deliveredUpTo: number; deliveries: Array<[number, number]> } {
    this.snapshots++;
    const high = this.deliveredHigh;
    const counts: Array<[number, number]> = [];
    for (const e of this.outstanding) {
      const o = e.rec.offset;
      if (o >= high) break;
      const n = e.planned !== undefined && e.planned > e.deliveries ? e.planned : e.deliveries;
      if (this.persistsCount(n)) counts.push([o, n]);
    }
    for (const [o, c] of this.restored) if (o >= this.readPos && this.persistsCount(c)) counts.push([o, c]);
    if (counts.length > MAX_PERSISTED_COUNTS) {
      // Keep the real redelivery counts first: a lost one under-counts, a lost 0 only over-counts.
      counts.sort((a, b) => (b[1] > 1 ? 1 : 0) - (a[1] > 1 ? 1 : 0) || a[0] - b[0]);
      counts.length = MAX_PERSISTED_COUNTS;
    }
    const upTo = Math.max(this.reservedUpTo, high);
    // The store refuses (and so would not save the position with) a count at or past the mark.
    return { deliveredUpTo: upTo, deliveries: counts.filter(([o]) => o < upTo) };
  }

  /**
   * Whether the count of an offset below the mark is written. 1 goes without
   * saying (the mark implies it). 0 (fetched, not yet delivered, e.g. blocked
   * behind its key while later offsets went out) is written only once the
   * group is closed: while it runs, the offset may be delivered after this
   * snapshot and before the next write, and a crash in between would leave a 0
   * on disk for a delivered offset, so its redelivery would say 1. Left out, it
   * counts once after a crash: an over-count, which is allowed.
   */
  private persistsCount(n: number): boolean {
    return n !== 1 && (n !== 0 || this.closed);
  }

  /** The host wrote deliveryState() snapshot `snapshot`, taken at `generation`: dispatch may go up to its mark. */
  persisted(deliveredUpTo: number, generation: number, snapshot: number): void {
    if (generation !== this.generation) return;
    if (deliveredUpTo > this.durableUpTo) {
      this.durableUpTo = deliveredUpTo;
      this.stalled = false;
    }
    if (snapshot > this.durableSnapshot) this.durableSnapshot = snapshot;
    this.pump();
  }

  get currentGeneration(): number {
    return this.generation;
  }

  /** Raises the mark to write past `offset` and asks the host to write it now. */
  private reserve(offset: number): void {
    if (this.closed) return;
    const ahead = Math.max(this.reserveAhead, this.members.reduce((n, m) => n + m.spec.concurrency, 0));
    this.reservedUpTo = Math.max(this.reservedUpTo, offset + ahead);
    this.requestWrite();
  }

  /** Asks the host to write this group's state now (one write at a time; a failed one is retried in 1 s). */
  private requestWrite(): void {
    if (this.reserving || this.reserveRetryTimer) return;
    this.reserving = true;
    this.host.positionChanged(this);
    this.host.commit().then(
      () => {
        this.reserving = false;
        // Restored counts planned after this write's snapshot make pump() ask for the next one.
        this.pump();
      },
      () => {
        this.reserving = false;
        if (this.closed) return;
        // The host logged it; dispatch past the mark waits for a later write.
        this.reserveRetryTimer = setTimeout(() => {
          this.reserveRetryTimer = undefined;
          this.pump();
        }, 1000);
        this.reserveRetryTimer.unref();
      },
    );
  }

  get inFlight(): number {
    let n = 0;
    for (const m of this.members) n += m.inflight.size;
    return n;
  }

  addMember(spec: ConsumeSpec, onMessage: (d: Delivery) => void, onClose: (m: GroupMember) => void): GroupMember {
    const m = new GroupMember(this, spec, onMessage, onClose);
    this.members.push(m);
    // Start writing the delivered-up-to mark now, so the first deliveries rarely wait for it.
    if (this.durableUpTo - this.readPos < this.reserveAhead / 2) this.reserve(this.readPos);
    // setImmediate runs after the microtasks that hand the Consumer to the caller.
    setImmediate(() => {
      m.started = true;
      this.pump();
    });
    return m;
  }

  /** The member leaves: whatever it had in flight goes to the others at once. */
  removeMember(m: GroupMember): void {
    if (m.closed) return;
    m.closed = true;
    const i = this.members.indexOf(m);
    if (i >= 0) this.members.splice(i, 1);
    const back = m.inflight.valuesList().sort((a, b) => a.rec.offset - b.rec.offset);
    m.inflight.clear();
    m.deadlines.clear();
    for (const e of back) {
      e.member = undefined;
      e.state = State.Waiting;
      this.retry.push(e);
    }
    this.pump();
  }

  /** New log data (or retention) may concern this group. */
  wake(): void {
    this.wakes++;
    this.caughtUp = false;
    if (!this.fetching && this.members.length > 0) this.maybeFetch();
  }

  ack(m: GroupMember, id: number): void {
    const e = m.inflight.get(id);
    if (!e) return; // already redelivered elsewhere (ack wait passed, reset) or acked twice
    m.inflight.delete(id);
    this.complete(e);
    this.pump();
  }

  nack(m: GroupMember, id: number, error: string): void {
    const e = m.inflight.get(id);
    if (!e) return;
    m.inflight.delete(id);
    e.member = undefined;
    this.fail(e, m.spec, error, false);
    this.pump();
  }

  /** Moves the cursor; everything in flight is forgotten (late acks are ignored). */
  reset(offset: number): void {
    this.generation++;
    for (const m of this.members) {
      m.inflight.clear();
      m.deadlines.clear();
    }
    for (const e of this.outstanding) if (e.retryTimer) clearTimeout(e.retryTimer);
    this.outstanding.clear();
    this.ready.clear();
    this.retry.clear();
    this.keys.clear();
    this.readPos = offset;
    this.committedOffset = offset;
    this.caughtUp = false;
    // Counts start over at the new position: nothing at or past it counts as delivered.
    this.restored.clear();
    this.restoredUpTo = offset;
    this.deliveredHigh = offset;
    this.reservedUpTo = offset;
    this.durableUpTo = offset;
    this.host.positionChanged(this);
    this.pump();
  }

  commit(): Promise<void> {
    return this.host.commit().catch(() => undefined);
  }

  /** Stops dispatch and timers; dead letters already on their way may still complete (see drain). */
  close(): void {
    this.closed = true;
    // Nothing more is dispatched: the final write can say exactly what was delivered
    // (the mark, and the offsets below it never delivered, which only a closed group writes).
    this.reservedUpTo = this.deliveredHigh;
    this.host.positionChanged(this);
    for (const e of this.outstanding) {
      // Planned but never delivered: the final write keeps the count it really has.
      if (e.planned !== undefined && e.planned > e.deliveries) e.planned = undefined;
    }
    if (this.reserveRetryTimer) clearTimeout(this.reserveRetryTimer);
    this.reserveRetryTimer = undefined;
    for (const e of this.outstanding) if (e.retryTimer) clearTimeout(e.retryTimer);
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (this.fetchRetryTimer) clearTimeout(this.fetchRetryTimer);
    this.ackTimer = undefined;
    this.fetchRetryTimer = undefined;
  }

  /** Waits for dead-letter publishes in flight, so the messages they settle count as acked. */
  async drain(): Promise<void> {
    while (this.deadLettering.size > 0) await Promise.allSettled([...this.deadLettering]);
  }

  // ---- dispatch -------------------------------------------------------------

  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      while (this.retry.length + this.ready.length > 0) {
        const q = this.retry.length > 0 ? this.retry : this.ready;
        const e = q.peek()!;
        if (e.state !== State.Waiting) {
          q.shift();
          continue;
        }
        if (e.rec.offset >= this.durableUpTo) {
          // Its delivery must be on disk before it happens: wait for the write (and write further ahead next time).
          if (!this.stalled && this.durableUpTo > this.committedOffset) this.reserveAhead = Math.min(4 * this.reserveAhead, MAX_RESERVE_AHEAD);
          this.stalled = true;
          this.reserve(e.rec.offset);
          break;
        }
        const restored = e.restoredCount === true;
        if (restored) {
          // Its count came from before a restart: the raised count goes to disk first (in order,
          // one write for every such entry fetched), so a message that crashes the broker every
          // time still climbs to maxDeliver.
          if (e.waitSnapshot === undefined) this.planRestoredCounts();
          if (e.waitSnapshot! > this.durableSnapshot) {
            this.requestWrite();
            break;
          }
          e.restoredCount = false;
        }
        const m = this.nextMember();
        if (!m) break;
        q.shift();
        if (restored && e.deliveries >= m.spec.maxDeliver) {
          // Delivered maxDeliver times before a restart and never settled (e.g. it crashed the process).
          this.deadLetter(e, m.spec, `not acked after ${e.deliveries} deliveries (the broker restarted meanwhile)`);
          continue;
        }
        this.deliver(m, e);
      }
    } finally {
      this.pumping = false;
    }
    this.maybeFetch();
  }

  /** Every fetched entry with a restored count gets its next count into the next write. */
  private planRestoredCounts(): void {
    for (const x of this.outstanding) {
      if (x.restoredCount && x.waitSnapshot === undefined) {
        x.planned = x.deliveries + 1;
        x.waitSnapshot = this.snapshots + 1;
      }
    }
    this.host.positionChanged(this);
  }

  private nextMember(): GroupMember | undefined {
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const m = this.members[(this.rr + i) % n];
      if (m.hasRoom()) {
        this.rr = (this.rr + i + 1) % n;
        return m;
      }
    }
    return undefined;
  }

  private deliver(m: GroupMember, e: Entry): void {
    e.deliveries++;
    const o = e.rec.offset;
    if (o >= this.deliveredHigh) {
      this.deliveredHigh = o + 1;
      // Write the next mark before dispatch reaches this one, so it rarely waits.
      if (!this.reserving && this.durableUpTo - this.deliveredHigh < (this.reserveAhead * 3) / 4) this.reserve(this.durableUpTo);
    }
    e.state = State.InFlight;
    e.member = m;
    const id = m.nextId++;
    e.deliveryId = id;
    m.inflight.set(id, e);
    const at = performance.now() + m.spec.ackWaitMs;
    m.deadlines.push({ at, entry: e, id });
    // Acked deadlines stay queued until they reach the head; compact when they pile up behind a slow one.
    if (m.deadlines.length > 4 * m.spec.concurrency + 1024) m.deadlines.filter(d => isLive(m, d));
    if (at < this.ackTimerAt) this.armAckTimer(at);
    const stats = this.host.stats;
    stats.delivered++;
    if (e.deliveries > 1) stats.redelivered++;
    try {
      m.onMessage(new PullDelivery(id, this.topic, e.rec, e.deliveries, this.name));
    } catch (err) {
      this.host.logger.error(`consumer of '${this.topic}' group '${this.name}' threw on delivery: ${(err as Error)?.message ?? err}`);
    }
  }

  /** Acked, or dead-lettered: frees its key and advances the position. */
  private complete(e: Entry): void {
    e.state = State.Done;
    e.member = undefined;
    const key = e.rec.key;
    if (key !== undefined) {
      const q = this.keys.get(key);
      if (q) {
        q.shift();
        const next = q.peek();
        if (next) this.retry.push(next);
        else this.keys.delete(key);
      }
    }
    let head = this.outstanding.peek();
    while (head && head.state === State.Done) {
      this.outstanding.shift();
      head = this.outstanding.peek();
    }
    const committed = head ? head.rec.offset : this.readPos;
    if (committed !== this.committedOffset) {
      this.committedOffset = committed;
      this.host.positionChanged(this);
    }
  }

  /** A failed attempt: retry after the backoff, at once (ack wait), or dead-letter after maxDeliver. */
  private fail(e: Entry, spec: ConsumeSpec, error: string, immediate: boolean): void {
    if (e.deliveries >= spec.maxDeliver) {
      this.deadLetter(e, spec, error);
      return;
    }
    const b = spec.backoffMs;
    const delay = immediate || b.length === 0 ? 0 : b[Math.min(e.deliveries - 1, b.length - 1)];
    if (delay <= 0) {
      e.state = State.Waiting;
      this.retry.push(e);
      return;
    }
    e.state = State.Backoff;
    const gen = this.generation;
    e.retryTimer = setTimeout(() => {
      e.retryTimer = undefined;
      if (gen !== this.generation || e.state !== State.Backoff) return;
      e.state = State.Waiting;
      this.retry.push(e);
      this.pump();
    }, delay);
  }

  private deadLetter(e: Entry, spec: ConsumeSpec, error: string): void {
    e.state = State.DeadLettering;
    const { stats, logger } = this.host;
    stats.deadLettered++;
    const where = `'${this.topic}' offset ${e.rec.offset} (group '${this.name}')`;
    if (spec.deadLetter === false) {
      logger.warn(`dropping ${where} after ${e.deliveries} failed deliveries: ${error}`);
      this.complete(e);
      return;
    }
    const headers: Record<string, string> = {
      ...e.rec.headers,
      'x-logbus-topic': this.topic,
      'x-logbus-offset': String(e.rec.offset),
      'x-logbus-error': error.length > MAX_ERROR_CHARS ? error.slice(0, MAX_ERROR_CHARS) + '…' : error,
      'x-logbus-deliveries': String(e.deliveries),
    };
    const gen = this.generation;
    const target = spec.deadLetter;
    const finish = (): void => {
      if (gen !== this.generation) return;
      this.complete(e);
      this.pump();
    };
    const p = this.host.deadLetter(target, e.rec, headers).then(finish, err => {
      if (this.closed || (err as { code?: string })?.code === 'CLOSED') {
        // Shutting down: leave it unacked, so it is tried again after the restart instead of lost.
        logger.warn(`${where} was not dead-lettered before shutdown; it stays unacked`);
        return;
      }
      // Nowhere to keep it (e.g. too large for the dead-letter topic): say so loudly, then move on rather than block the group forever.
      logger.error(`could not dead-letter ${where} to '${target}': ${(err as Error)?.message ?? err}; message skipped`);
      finish();
    });
    this.deadLettering.add(p);
    void p.finally(() => this.deadLettering.delete(p));
  }

  // ---- ack timeouts: one timer per group, armed for the earliest deadline ----

  private armAckTimer(at: number): void {
    if (this.closed) return;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimerAt = at;
    this.ackTimer = setTimeout(() => this.onAckTimer(), Math.max(0, Math.ceil(at - performance.now())));
    // Unref'd: an idle consumer must not keep the process alive; the connection's owner does.
    this.ackTimer.unref();
  }

  private onAckTimer(): void {
    this.ackTimer = undefined;
    this.ackTimerAt = Infinity;
    if (this.closed) return;
    const now = performance.now();
    let nextAt = Infinity;
    for (const m of [...this.members]) {
      for (let d = m.deadlines.peek(); d; d = m.deadlines.peek()) {
        if (!isLive(m, d)) {
          m.deadlines.shift();
          continue;
        }
        if (d.at > now) {
          nextAt = Math.min(nextAt, d.at);
          break;
        }
        m.deadlines.shift();
        m.inflight.delete(d.id);
        d.entry.member = undefined;
        this.fail(d.entry, m.spec, `not acked within ackWaitMs ${m.spec.ackWaitMs}`, true);
      }
    }
    if (nextAt < Infinity) this.armAckTimer(nextAt);
    this.pump();
  }

  // ---- reading the log -------------------------------------------------------

  private maybeFetch(): void {
    if (this.fetching || this.caughtUp || this.closed || this.members.length === 0) return;
    if (this.ready.length >= READ_AHEAD) return;
    const log = this.log;
    if (this.readPos < log.earliestOffset) this.skipToEarliest();
    if (this.readPos >= log.nextOffset) return;
    const head = this.outstanding.peek();
    const span = head ? this.readPos - head.rec.offset : 0;
    const room = MAX_SPAN - span;
    if (room <= 0) return;
    this.fetching = true;
    const gen = this.generation;
    const from = this.readPos;
    const wakes = this.wakes;
    log.read(from, Math.min(FETCH_BATCH, room)).then(
      recs => {
        this.fetching = false;
        if (gen !== this.generation || this.closed) {
          this.maybeFetch();
          return;
        }
        // Empty, and nothing new announced since the read began: wait for the next wake().
        if (recs.length === 0 && wakes === this.wakes) this.caughtUp = true;
        this.ingest(recs, from);
        this.pump();
      },
      err => {
        this.fetching = false;
        if (this.closed) return;
        this.host.logger.error(`reading '${this.topic}' for group '${this.name}' failed: ${(err as Error)?.message ?? err}; retrying in 1 s`);
        this.fetchRetryTimer = setTimeout(() => {
          this.fetchRetryTimer = undefined;
          this.maybeFetch();
        }, 1000);
        this.fetchRetryTimer.unref();
      },
    );
  }

  private ingest(recs: LogRecord[], from: number): void {
    if (recs.length > 0 && recs[0].offset > from && recs[0].offset > this.readPos) {
      // Retention removed what we were about to read.
      this.host.logger.warn(
        `group '${this.name}' on '${this.topic}' skipped offsets ${this.readPos}..${recs[0].offset - 1}: removed by retention before being consumed`,
      );
    }
    for (const rec of recs) {
      if (rec.offset < this.readPos) continue;
      let deliveries = 0;
      if (rec.offset < this.restoredUpTo) {
        // Delivered before the restart (or possibly so, after a crash): the count carries on.
        deliveries = this.restored.get(rec.offset) ?? 1;
        this.restored.delete(rec.offset);
      }
      const e: Entry = { rec, deliveries, state: State.Waiting, member: undefined, deliveryId: 0, retryTimer: undefined };
      if (deliveries > 0) e.restoredCount = true;
      this.outstanding.push(e);
      this.readPos = rec.offset + 1;
      const key = rec.key;
      if (key === undefined) {
        this.ready.push(e);
        continue;
      }
      const q = this.keys.get(key);
      if (q) q.push(e);
      else {
        const nq = new Deque<Entry>();
        nq.push(e);
        this.keys.set(key, nq);
        this.ready.push(e);
      }
    }
    if (this.outstanding.length === 0 && this.committedOffset !== this.readPos) {
      this.committedOffset = this.readPos;
      this.host.positionChanged(this);
    }
  }

  private skipToEarliest(): void {
    const earliest = this.log.earliestOffset;
    this.host.logger.warn(
      `group '${this.name}' on '${this.topic}' was at offset ${this.readPos}, below the earliest retained offset ${earliest}: skipping ahead (retention removed the rest)`,
    );
    this.readPos = earliest;
    if (this.outstanding.length === 0) {
      this.committedOffset = earliest;
      this.host.positionChanged(this);
    }
  }
}

function isLive(m: GroupMember, d: AckDeadline): boolean {
  const e = d.entry;
  return e.member === m && e.deliveryId === d.id && e.state === State.InFlight;
}
