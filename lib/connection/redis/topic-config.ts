import { resolveTopicConfig, topicConfigFor, type ResolvedTopicConfig, type TopicConfig } from '../../options.js';
import type { RedisClient } from './client.js';
import type { RedisKeys } from './keys.js';

/** How long a topic's config is trusted before it is read again (another process may createTopic). */
const CACHE_MS = 5000;
const MAX_CACHED = 10_000;

/**
 * A topic's config, as on one shared broker:
 * 1. the config saved with the topic by createTopic;
 * 2. else the `topics` option: this connection's own keys, then the keys other
 *    connections on the prefix brought (shared in `P:topic-options`; the newest
 *    connection's value of a key wins there, as new code replaces old), matched
 *    exactly, then by the best wildcard;
 * 3. else the defaults.
 */
export class TopicConfigs {
  private readonly cache = new Map<string, { config: ResolvedTopicConfig; at: number }>();

  constructor(
    private readonly main: RedisClient,
    private readonly keys: RedisKeys,
    private readonly topics: Record<string, TopicConfig>,
    private readonly warn: (message: string) => void,
  ) {}

  /** Shares this connection's `topics` option with the prefix. */
  async register(): Promise<void> {
    const entries = Object.entries(this.topics);
    if (entries.length === 0) return;
    const key = this.keys.topicOptions;
    const before = (await this.main.call('HMGET', key, ...entries.map(([k]) => k))) as (string | null)[];
    entries.forEach(([k, v], i) => {
      if (before[i] !== null && before[i] !== JSON.stringify(v)) {
        this.warn(`topics['${k}'] differs from the value another connection on this Redis prefix registered; this one replaces it`);
      }
    });
    await this.main.call('HSET', key, ...entries.flatMap(([k, v]) => [k, JSON.stringify(v)]));
  }

  async get(topic: string): Promise<ResolvedTopicConfig> {
    const hit = this.cache.get(topic);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.config;
    const [stored, shared] = (await Promise.all([
      this.main.call('HGET', this.keys.meta(topic), 'config'),
      this.main.call('HGETALL', this.keys.topicOptions),
    ])) as [string | null, string[] | Record<string, string>];
    let config: ResolvedTopicConfig;
    if (stored) {
      config = resolveTopicConfig(topic, JSON.parse(stored) as TopicConfig);
    } else {
      const merged: Record<string, TopicConfig> = {};
      const pairs = Array.isArray(shared) ? shared : Object.entries(shared).flat();
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        try {
          merged[pairs[i]] = JSON.parse(pairs[i + 1]) as TopicConfig;
        } catch {
          // skip a damaged entry rather than fail every produce
        }
      }
      Object.assign(merged, this.topics);
      config = topicConfigFor(topic, merged);
    }
    this.remember(topic, config);
    return config;
  }

  remember(topic: string, config: ResolvedTopicConfig): void {
    if (this.cache.size >= MAX_CACHED && !this.cache.has(topic)) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(topic, { config, at: Date.now() });
  }
}

/** A resolved config as JSON (Infinity → absent, durations already in ms). */
export function storableConfig(c: ResolvedTopicConfig): TopicConfig {
  return {
    durable: c.durable,
    retention: {
      maxAgeMs: Number.isFinite(c.retention.maxAgeMs) ? c.retention.maxAgeMs : undefined,
      maxBytes: Number.isFinite(c.retention.maxBytes) ? c.retention.maxBytes : undefined,
    },
    segmentBytes: c.segmentBytes,
    maxMessageBytes: c.maxMessageBytes,
  };
}
