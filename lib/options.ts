import type { Deserializer, Serializer } from '@nestjs/microservices';
import { LogBusError } from './errors.js';
import { isWildcard, matchPattern, validatePattern } from './topic.js';

export type FsyncMode = 'always' | 'interval' | 'never';
/** Milliseconds, or a string such as '500ms', '30s', '5m', '2h', '7d'. */
export type Duration = number | string;

export interface RetentionConfig {
  maxAgeMs?: Duration;
  maxBytes?: number;
}

export interface TopicConfig {
  /** default true; false = pure push (pub/sub), nothing stored */
  durable?: boolean;
  retention?: RetentionConfig;
  segmentBytes?: number;
  maxMessageBytes?: number;
}

export interface LogBusOptions {
  url?: string;
  dataDir?: string;
  listen?: { host?: string; port: number };
  prefix?: string;
  token?: string;
  fsync?: FsyncMode;
  group?: string;
  topics?: Record<string, TopicConfig>;
  retentionCheckMs?: Duration;
  rpcTimeoutMs?: Duration;
  /** Per push subscriber; past it messages for that subscriber are dropped and counted. */
  subscriberBufferBytes?: number;
  /** close(): how long to wait for handlers in flight. */
  shutdownTimeoutMs?: Duration;
  serializer?: Serializer;
  deserializer?: Deserializer;
}

export interface ResolvedTopicConfig {
  durable: boolean;
  retention: { maxAgeMs: number; maxBytes: number };
  segmentBytes: number;
  maxMessageBytes: number;
}

export const MiB = 1024 * 1024;
const DAY = 24 * 3600 * 1000;

export const DEFAULTS = {
  dataDir: './.logbus',
  prefix: 'logbus',
  fsync: 'always' as FsyncMode,
  fsyncIntervalMs: 100,
  retentionCheckMs: 30_000,
  rpcTimeoutMs: 30_000,
  subscriberBufferBytes: 8 * MiB,
  shutdownTimeoutMs: 10_000,
  brokerPort: 7420,
  brokerHost: '127.0.0.1',
  topic: {
    durable: true,
    retention: { maxAgeMs: 7 * DAY, maxBytes: Infinity },
    segmentBytes: 64 * MiB,
    maxMessageBytes: 1 * MiB,
  } satisfies ResolvedTopicConfig,
  consume: {
    from: 'earliest' as const,
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 5,
    backoffMs: [1000, 5000, 30_000],
  },
} as const;

/** Hard ceilings, so no option can ask for unbounded memory. */
export const LIMITS = {
  maxMessageBytes: 64 * MiB,
  minSegmentBytes: 4096,
  maxSegmentBytes: 1024 * MiB,
  maxConcurrency: 10_000,
  maxDeliver: 1_000_000,
  maxBatchMessages: 10_000,
};

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY };

/** '30s' → 30000. Throws INVALID_OPTION naming the option. */
export function parseDuration(value: Duration, option: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw badOption(option, value, 'a non-negative number of milliseconds');
    return value;
  }
  const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value) : null;
  if (!m) throw badOption(option, value, "a duration such as 500, '30s', '5m', '7d'");
  return Number(m[1]) * UNITS[m[2]];
}

export function badOption(option: string, value: unknown, expected: string): LogBusError {
  let shown: string;
  try {
    shown = JSON.stringify(value) ?? String(value);
  } catch {
    shown = String(value);
  }
  return new LogBusError('INVALID_OPTION', `option '${option}' is ${shown}; expected ${expected}`);
}

export function positiveInt(value: unknown, option: string, max = Number.MAX_SAFE_INTEGER, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw badOption(option, value, `an integer from ${min} to ${max}`);
  }
  return value;
}

function resolveOne(name: string, c: TopicConfig | undefined, base: ResolvedTopicConfig): ResolvedTopicConfig {
  if (!c) return base;
  const at = `topics['${name}']`;
  if (c.durable !== undefined && typeof c.durable !== 'boolean') throw badOption(`${at}.durable`, c.durable, 'true or false');
  const maxAge = c.retention?.maxAgeMs;
  const maxBytes = c.retention?.maxBytes;
  return {
    durable: c.durable ?? base.durable,
    retention: {
      maxAgeMs: maxAge === undefined ? base.retention.maxAgeMs : parseDuration(maxAge, `${at}.retention.maxAgeMs`),
      maxBytes: maxBytes === undefined ? base.retention.maxBytes : positiveInt(maxBytes, `${at}.retention.maxBytes`),
    },
    segmentBytes:
      c.segmentBytes === undefined ? base.segmentBytes : positiveInt(c.segmentBytes, `${at}.segmentBytes`, LIMITS.maxSegmentBytes, LIMITS.minSegmentBytes),
    maxMessageBytes:
      c.maxMessageBytes === undefined ? base.maxMessageBytes : positiveInt(c.maxMessageBytes, `${at}.maxMessageBytes`, LIMITS.maxMessageBytes),
  };
}

/** Validates a single TopicConfig (e.g. createTopic's argument) and fills defaults. */
export function resolveTopicConfig(name: string, config: TopicConfig | undefined): ResolvedTopicConfig {
  return resolveOne(name, config, DEFAULTS.topic);
}

/**
 * The config for a concrete topic: an exact key wins; otherwise the matching
 * wildcard key with the most literal segments.
 */
export function topicConfigFor(topic: string, topics: Record<string, TopicConfig> | undefined): ResolvedTopicConfig {
  if (!topics) return DEFAULTS.topic;
  if (topics[topic]) return resolveOne(topic, topics[topic], DEFAULTS.topic);
  let best: string | undefined;
  let bestScore = -1;
  for (const key of Object.keys(topics)) {
    if (!isWildcard(key) || !matchPattern(key, topic)) continue;
    const score = key.split('.').filter(s => s !== '*' && s !== '>').length * 2 + (key.endsWith('>') ? 0 : 1);
    if (score > bestScore) {
      best = key;
      bestScore = score;
    }
  }
  return best ? resolveOne(best, topics[best], DEFAULTS.topic) : DEFAULTS.topic;
}

export interface ResolvedOptions {
  url: string | undefined;
  dataDir: string;
  listen: { host: string; port: number } | undefined;
  prefix: string;
  token: string | undefined;
  fsync: FsyncMode;
  group: string | undefined;
  topics: Record<string, TopicConfig>;
  retentionCheckMs: number;
  rpcTimeoutMs: number;
  subscriberBufferBytes: number;
  shutdownTimeoutMs: number;
}

/** Checks every option up front; a bad one is a start-up error that names it. */
export function resolveOptions(o: LogBusOptions = {}): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw badOption('options', o, 'an object');
  if (o.url !== undefined && !/^(logbus|redis|rediss):\/\/[^\s]+$/.test(String(o.url))) {
    throw badOption('url', o.url, "'logbus://host:port', 'redis://host:port' or unset for the embedded broker");
  }
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir.length === 0)) {
    throw badOption('dataDir', o.dataDir, "a directory path or ':memory:'");
  }
  if (o.fsync !== undefined && !['always', 'interval', 'never'].includes(o.fsync)) {
    throw badOption('fsync', o.fsync, "'always', 'interval' or 'never'");
  }
  if (o.listen !== undefined) {
    if (typeof o.listen !== 'object' || o.listen === null) throw badOption('listen', o.listen, '{ host?, port }');
    positiveInt(o.listen.port, 'listen.port', 65535, 0);
    if (o.listen.host !== undefined && typeof o.listen.host !== 'string') throw badOption('listen.host', o.listen.host, 'a host name');
  }
  for (const k of ['prefix', 'token', 'group'] as const) {
    if (o[k] !== undefined && (typeof o[k] !== 'string' || o[k] === '')) throw badOption(k, o[k], 'a non-empty string');
  }
  const topics = o.topics ?? {};
  if (typeof topics !== 'object' || topics === null) throw badOption('topics', topics, 'an object keyed by topic or pattern');
  for (const [key, cfg] of Object.entries(topics)) {
    try {
      validatePattern(key);
    } catch {
      throw badOption(`topics['${key}']`, key, 'a topic name or a wildcard pattern as key');
    }
    resolveOne(key, cfg, DEFAULTS.topic);
  }
  return {
    url: o.url,
    dataDir: o.dataDir ?? DEFAULTS.dataDir,
    listen: o.listen ? { host: o.listen.host ?? DEFAULTS.brokerHost, port: o.listen.port } : undefined,
    prefix: o.prefix ?? DEFAULTS.prefix,
    token: o.token,
    fsync: o.fsync ?? DEFAULTS.fsync,
    group: o.group,
    topics,
    retentionCheckMs: o.retentionCheckMs === undefined ? DEFAULTS.retentionCheckMs : parseDuration(o.retentionCheckMs, 'retentionCheckMs'),
    rpcTimeoutMs: o.rpcTimeoutMs === undefined ? DEFAULTS.rpcTimeoutMs : parseDuration(o.rpcTimeoutMs, 'rpcTimeoutMs'),
    subscriberBufferBytes:
      o.subscriberBufferBytes === undefined ? DEFAULTS.subscriberBufferBytes : positiveInt(o.subscriberBufferBytes, 'subscriberBufferBytes'),
    shutdownTimeoutMs: o.shutdownTimeoutMs === undefined ? DEFAULTS.shutdownTimeoutMs : parseDuration(o.shutdownTimeoutMs, 'shutdownTimeoutMs'),
  };
}
