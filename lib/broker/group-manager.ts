import { LogBusError } from '../errors.js';
import type { ConsumeFrom, ConsumeSpec, Delivery, GroupInfo } from '../connection/types.js';
import type { GroupOffset, LogRecord, LogStore, TopicLog } from '../store/types.js';
import { ConsumerGroup, type GroupHost, type GroupMember } from './consumer-group.js';
import type { BrokerLogger } from './logger.js';
import type { BrokerStats } from './stats.js';

/** Positions are written at most this often (and on close): batching at the store boundary. */
const COMMIT_EVERY_MS = 100;
const MAX_GROUPS = 100_000;

const groupKey = (topic: string, group: string): string => `${topic}\u0000${group}`;

/**
 * Every consumer group of the broker: their committed positions (loaded at
 * open, written back in batches), creation with `from`, resetGroup, groups().
 */
export class GroupManager {
  private readonly groups = new Map<string, ConsumerGroup>();
  /** topic → its live groups, so a publish wakes only those. */
  private readonly byTopic = new Map<string, ConsumerGroup[]>();
  private readonly creating = new Map<string, Promise<ConsumerGroup>>();
  /** Positions as last loaded or committed, for groups with no live state. */
  private readonly saved = new Map<string, GroupOffset>();
  private readonly dirty = new Set<ConsumerGroup>();
  private commitTimer: NodeJS.Timeout | undefined;
  private committing: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly host: GroupHost;

  constructor(
    private readonly store: LogStore,
    stats: BrokerStats,
    logger: BrokerLogger,
    deadLetter: (topic: string, rec: LogRecord, headers: Record<string, string>) => Promise<unknown>,
  ) {
    this.host = {
      stats,
      logger,
      deadLetter,
      positionChanged: g => this.markDirty(g),
      commit: () => this.commitNow([]),
    };
  }

  /** `endOf` gives a topic's log end at open: nothing at or past it can have been delivered before. */
  async init(endOf: (topic: string) => number | undefined = () => undefined): Promise<void> {
    for (const g of await this.store.loadGroupOffsets()) {
      const end = endOf(g.topic);
      if (g.deliveredUpTo !== undefined && end !== undefined && g.deliveredUpTo > end) {
        // The saved mark ran ahead of the log (written before a crash): offsets appended later were never delivered.
        g.deliveredUpTo = end;
        g.deliveries = g.deliveries?.filter(([o]) => o < end);
      }
      this.saved.set(groupKey(g.topic, g.group), g);
    }
  }

  /** Adds a member to (topic, group), creating the group at `from` if it has no position yet. */
  async join(log: TopicLog, spec: ConsumeSpec, onMessage: (d: Delivery) => void, onClose: (m: GroupMember) => void): Promise<GroupMember> {
    const group = await this.groupFor(log, spec.group, spec.from);
    if (this.closed) throw new LogBusError('CLOSED', 'the broker is closed');
    return group.addMember(spec, onMessage, onClose);
  }

  private groupFor(log: TopicLog, name: string, from: ConsumeFrom): Promise<ConsumerGroup> {
    const k = groupKey(log.name, name);
    const g = this.groups.get(k);
    if (g) return Promise.resolve(g);
    let p = this.creating.get(k);
    if (p) return p;
    p = (async () => {
      try {
        if (this.groups.size >= MAX_GROUPS) throw new LogBusError('INVALID_ARGUMENT', `too many consumer groups (limit ${MAX_GROUPS})`);
        const saved = this.saved.get(k);
        const start = saved ? saved.offset : await positionFor(log, from);
        const group = new ConsumerGroup(log.name, name, log, start, this.host, saved);
        this.groups.set(k, group);
        const list = this.byTopic.get(log.name);
        if (list) list.push(group);
        else this.byTopic.set(log.name, [group]);
        // A new group's start is persisted at once: a restart must not move a 'latest' group.
        if (!saved) this.markDirty(group);
        return group;
      } finally {
        this.creating.delete(k);
      }
    })();
    this.creating.set(k, p);
    return p;
  }

  /** New records on a topic: wake its groups. */
  wake(topic: string): void {
    const list = this.byTopic.get(topic);
    if (list) for (const g of list) g.wake();
  }

  wakeAll(): void {
    for (const g of this.groups.values()) g.wake();
  }

  async reset(log: TopicLog, name: string, to: ConsumeFrom): Promise<void> {
    const offset = await positionFor(log, to);
    const k = groupKey(log.name, name);
    const pending = this.creating.get(k);
    if (pending) await pending.catch(() => undefined);
    const g = this.groups.get(k);
    if (g) g.reset(offset);
    // Counts start over at the new position: nothing at or past it was delivered.
    const entry: GroupOffset = { topic: log.name, group: name, offset, deliveredUpTo: offset, deliveries: [] };
    if (!g) this.saved.set(k, entry);
    await this.commitNow(g ? [] : [entry]);
  }

  info(log: TopicLog): GroupInfo[] {
    const out = new Map<string, GroupInfo>();
    const earliest = log.earliestOffset;
    const next = log.nextOffset;
    const add = (group: string, committed: number, inFlight: number): void => {
      const c = Math.min(Math.max(committed, earliest), next);
      out.set(group, { group, committedOffset: c, lag: next - c, inFlight });
    };
    for (const s of this.saved.values()) if (s.topic === log.name) add(s.group, s.offset, 0);
    for (const g of this.groups.values()) if (g.topic === log.name) add(g.name, g.committedOffset, g.inFlight);
    return [...out.values()].sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
  }

  private markDirty(g: ConsumerGroup): void {
    this.dirty.add(g);
    if (this.commitTimer || this.closed) return;
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined;
      void this.commitNow([]);
    }, COMMIT_EVERY_MS);
  }

  /** Writes dirty positions (plus `extra`), one store call at a time. */
  private commitNow(extra: GroupOffset[]): Promise<void> {
    const run = async (): Promise<void> => {
      const entries = [...extra];
      const written: { g: ConsumerGroup; upTo: number; generation: number; snapshot: number }[] = [];
      for (const g of this.dirty) {
        const e: GroupOffset = { topic: g.topic, group: g.name, offset: g.committedOffset, ...g.deliveryState() };
        entries.push(e);
        written.push({ g, upTo: e.deliveredUpTo!, generation: g.currentGeneration, snapshot: g.snapshots });
        this.saved.set(groupKey(g.topic, g.name), e);
      }
      this.dirty.clear();
      if (entries.length === 0) return;
      try {
        await this.store.commitGroupOffsets(entries);
        for (const w of written) w.g.persisted(w.upTo, w.generation, w.snapshot);
      } catch (e) {
        this.host.logger.error(`committing consumer group positions failed: ${(e as Error)?.message ?? e}`);
        throw e;
      }
    };
    const p = this.committing.then(run, run);
    this.committing = p.catch(() => undefined);
    return p;
  }

  /** Stops every group and writes the final positions. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.commitTimer) clearTimeout(this.commitTimer);
    this.commitTimer = undefined;
    await Promise.allSettled(this.creating.values());
    for (const g of this.groups.values()) g.close();
    await Promise.all([...this.groups.values()].map(g => g.drain()));
    this.closed = true;
    // Closing groups marked themselves dirty (exact delivered marks): the write below covers them.
    if (this.commitTimer) clearTimeout(this.commitTimer);
    this.commitTimer = undefined;
    await this.commitNow([]).catch(() => undefined);
  }
}

/** Where `from` (or resetGroup's `to`) points on a log. */
export async function positionFor(log: TopicLog, from: ConsumeFrom): Promise<number> {
  if (from === 'earliest') return log.earliestOffset;
  if (from === 'latest') return log.nextOffset;
  if (from && typeof from === 'object') {
    if ('offset' in from && Number.isInteger(from.offset) && from.offset >= 0) {
      return Math.min(Math.max(from.offset, log.earliestOffset), log.nextOffset);
    }
    if ('timestamp' in from && Number.isFinite(from.timestamp)) return log.offsetForTimestamp(from.timestamp);
  }
  throw new LogBusError('INVALID_ARGUMENT', `position ${JSON.stringify(from)} must be 'earliest', 'latest', { offset: n >= 0 } or { timestamp: ms }`);
}

