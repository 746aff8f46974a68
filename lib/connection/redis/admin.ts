/**
 * Reading and administration: read, createTopic, topics, groups, resetGroup.
 *
 * topics().bytes is an estimate: Redis does not say how many bytes of a stream
 * are message bodies, so it is (messages in the stream) × (average body size of
 * everything ever appended), from counters the produce script keeps.
 */
import { LogBusError } from '../../errors.js';
import { LIMITS, resolveTopicConfig, type ResolvedTopicConfig, type TopicConfig } from '../../options.js';
import { validateTopicName } from '../../topic.js';
import type { ConsumeFrom, GroupInfo, ReadMessage, TopicInfo } from '../types.js';
import { asBusError, flatToObject } from './client.js';
import type { DriverContext } from './context.js';
import { idBefore, nextAfterId, offsetOf } from './keys.js';
import { validateGroupName } from '../consume-spec.js';
import { fromArgs } from './consume-spec.js';
import { RESET_GROUP } from './scripts.js';
import { parseStreamEntry, type RawEntry } from './stream-entry.js';
import { storableConfig, type TopicConfigs } from './topic-config.js';

export class Admin {
  constructor(
    private readonly ctx: DriverContext,
    private readonly configs: TopicConfigs,
  ) {}

  async read(topic: string, from: number | 'earliest', max: number): Promise<ReadMessage[]> {
    validateTopicName(topic);
    if (from !== 'earliest' && !(Number.isInteger(from) && from >= 0)) {
      throw new LogBusError('INVALID_ARGUMENT', `read '${topic}': from must be 'earliest' or an offset >= 0, got ${JSON.stringify(from)}`);
    }
    if (!Number.isInteger(max) || max < 1) throw new LogBusError('INVALID_ARGUMENT', `read '${topic}': max must be a positive integer`);
    const count = Math.min(max, LIMITS.maxBatchMessages);
    if (!(await this.configs.get(topic)).durable) {
      throw new LogBusError('NOT_DURABLE', `topic '${topic}' is not durable: nothing is stored to read`);
    }
    try {
      const entries = (await this.ctx.main.callBuffer(
        'XRANGE', this.ctx.keys.log(topic), from === 'earliest' ? '-' : idBefore(from), '+', 'COUNT', count,
      )) as RawEntry[];
      return entries.map(toReadMessage);
    } catch (e) {
      throw asBusError(e, `read '${topic}'`);
    }
  }

  /**
   * Configures a topic before use (saved in Redis, where it wins over every
   * connection's `topics` option); a no-op when the topic already has that
   * config. A topic already in use with another config is refused, as on the
   * embedded broker.
   */
  async createTopic(name: string, config: TopicConfig): Promise<void> {
    validateTopicName(name);
    if (config === null || typeof config !== 'object') {
      throw new LogBusError('INVALID_ARGUMENT', `createTopic('${name}') needs a config object`);
    }
    const resolved = resolveTopicConfig(name, config);
    const json = JSON.stringify(storableConfig(resolved));
    const { main, keys } = this.ctx;
    const refuse = (existing: ResolvedTopicConfig) =>
      new LogBusError(
        'INVALID_ARGUMENT',
        `topic '${name}' already exists with another config (${JSON.stringify(storableConfig(existing))}); createTopic must come before first use`,
      );
    try {
      const [stored, used] = (await Promise.all([main.call('HGET', keys.meta(name), 'config'), main.call('EXISTS', keys.meta(name))])) as [
        string | null,
        number,
      ];
      if (stored !== null) {
        const existing = resolveTopicConfig(name, JSON.parse(stored) as TopicConfig);
        if (JSON.stringify(storableConfig(existing)) !== json) throw refuse(existing);
      } else {
        if (Number(used) > 0) {
          const existing = await this.configs.get(name);
          if (JSON.stringify(storableConfig(existing)) !== json) throw refuse(existing);
        }
        const won = Number(await main.call('HSETNX', keys.meta(name), 'config', json));
        if (!won) {
          // another process configured it just now
          const now = (await main.call('HGET', keys.meta(name), 'config')) as string;
          if (now !== json) throw refuse(resolveTopicConfig(name, JSON.parse(now) as TopicConfig));
        }
      }
      await main.call('SADD', keys.topicsSet, name);
    } catch (e) {
      throw asBusError(e, `createTopic '${name}'`);
    }
    this.configs.remember(name, resolved);
  }

  async topics(): Promise<TopicInfo[]> {
    const { main, keys } = this.ctx;
    try {
      const names = ((await main.call('SMEMBERS', keys.topicsSet)) as string[]).sort();
      return await Promise.all(
        names.map(async (name): Promise<TopicInfo> => {
          const [meta, len, first, config] = await Promise.all([
            main.call('HMGET', keys.meta(name), 'next', 'bytes', 'count') as Promise<(string | null)[]>,
            main.call('XLEN', keys.log(name)) as Promise<number>,
            main.call('XRANGE', keys.log(name), '-', '+', 'COUNT', 1) as Promise<[string, string[]][]>,
            this.configs.get(name),
          ]);
          const next = Number(meta[0] ?? 0);
          const appended = Number(meta[2] ?? 0);
          const avg = appended > 0 ? Number(meta[1] ?? 0) / appended : 0;
          return {
            name,
            durable: config.durable,
            earliestOffset: first.length > 0 ? offsetOf(first[0][0]) : next,
            nextOffset: next,
            bytes: Math.round(Number(len) * avg),
          };
        }),
      );
    } catch (e) {
      throw asBusError(e, 'topics');
    }
  }

  async groups(topic: string): Promise<GroupInfo[]> {
    validateTopicName(topic);
    const { main, keys } = this.ctx;
    const log = keys.log(topic);
    try {
      let groups: Record<string, unknown>[];
      try {
        groups = ((await main.call('XINFO', 'GROUPS', log)) as unknown[]).map(flatToObject);
      } catch (e) {
        if (/no such key/i.test((e as Error)?.message ?? '')) return [];
        throw e;
      }
      const [nextRaw, first] = await Promise.all([
        main.call('HGET', keys.meta(topic), 'next') as Promise<string | null>,
        main.call('XRANGE', log, '-', '+', 'COUNT', 1) as Promise<[string, string[]][]>,
      ]);
      const next = Number(nextRaw ?? 0);
      const earliest = first.length > 0 ? offsetOf(first[0][0]) : next;
      const summaries = (await Promise.all(groups.map(g => main.call('XPENDING', log, String(g.name))))) as [number, string | null][];
      return groups.map((g, i) => {
        const [pending, minId] = summaries[i];
        let committed = Number(pending) > 0 && minId ? offsetOf(minId) : nextAfterId(String(g['last-delivered-id']));
        committed = Math.min(next, Math.max(earliest, committed));
        return { group: String(g.name), committedOffset: committed, lag: next - committed, inFlight: Number(pending) };
      });
    } catch (e) {
      throw asBusError(e, `groups '${topic}'`);
    }
  }

  async resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void> {
    validateTopicName(topic);
    validateGroupName(group);
    const [mode, value] = fromArgs(to);
    const config = await this.configs.get(topic);
    if (!config.durable) throw new LogBusError('NOT_DURABLE', `topic '${topic}' is not durable: it has no log and no groups`);
    try {
      await RESET_GROUP.run(this.ctx.main, [this.ctx.keys.log(topic), this.ctx.keys.meta(topic)], [group, mode, value]);
      await this.ctx.groupEvents.announce(topic, group, 'reset');
    } catch (e) {
      throw asBusError(e, `resetGroup '${topic}'/'${group}'`);
    }
  }
}

function toReadMessage([id, fields]: RawEntry): ReadMessage {
  const e = parseStreamEntry(id, fields ?? []);
  return { offset: e.offset, timestamp: e.timestamp, key: e.key, headers: e.headers, value: e.value };
}
