import { LogBusError } from '../errors.js';
import { resolveTopicConfig, topicConfigFor, type ResolvedTopicConfig, type TopicConfig } from '../options.js';
import type { TopicInfo } from '../connection/types.js';
import type { LogStore, TopicLog } from '../store/types.js';
import { validateTopicName } from '../topic.js';
import type { BrokerLogger } from './logger.js';

/** A known topic. Durable topics have a log; non-durable ones live only in memory. */
export interface TopicState {
  readonly name: string;
  readonly config: ResolvedTopicConfig;
  readonly log: TopicLog | undefined;
}

/** Bounds the topics a broker keeps: publishing to ever new names must not grow it without end. */
export const MAX_TOPICS = 100_000;

const sameConfig = (a: ResolvedTopicConfig, b: ResolvedTopicConfig): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * The topic registry: creates topics on first use with the matching `topics`
 * option (or the config saved by createTopic, which wins and survives
 * restarts), opens durable logs, and runs retention.
 */
export class TopicRegistry {
  private readonly topics = new Map<string, TopicState>();
  private readonly opening = new Map<string, Promise<TopicState>>();
  private saved: Record<string, TopicConfig> = {};
  private retentionTimer: NodeJS.Timeout | undefined;
  private retentionRunning = false;
  private afterRetention: (() => void) | undefined;

  constructor(
    private readonly store: LogStore,
    private readonly userTopics: Record<string, TopicConfig>,
    private readonly logger: BrokerLogger,
  ) {}

  /** Loads saved configs and opens every topic the store already holds. */
  async init(): Promise<void> {
    this.saved = await this.store.loadTopicConfigs();
    for (const name of this.store.topicNames()) await this.resolve(name);
    // Non-durable topics created by createTopic are remembered too.
    for (const name of Object.keys(this.saved)) if (!this.topics.has(name)) await this.resolve(name);
  }

  /** Adds `topics` option keys a later client brings along (the first opener's keys win). */
  addUserTopics(topics: Record<string, TopicConfig>): void {
    for (const [k, v] of Object.entries(topics)) {
      if (!(k in this.userTopics)) this.userTopics[k] = v;
      else if (JSON.stringify(this.userTopics[k]) !== JSON.stringify(v)) {
        this.logger.warn(`topics['${k}'] differs from the config the shared broker was opened with; keeping the first`);
      }
    }
  }

  get(name: string): TopicState | undefined {
    return this.topics.get(name);
  }

  all(): TopicState[] {
    return [...this.topics.values()];
  }

  configFor(name: string): ResolvedTopicConfig {
    const saved = this.saved[name];
    return saved ? resolveTopicConfig(name, saved) : topicConfigFor(name, this.userTopics);
  }

  /** The topic, created if needed. Throws INVALID_TOPIC for a bad name. */
  resolve(name: string): Promise<TopicState> {
    const t = this.topics.get(name);
    if (t) return Promise.resolve(t);
    validateTopicName(name);
    return this.create(name, this.configFor(name));
  }

  private create(name: string, config: ResolvedTopicConfig): Promise<TopicState> {
    let p = this.opening.get(name);
    if (p) return p;
    if (this.topics.size + this.opening.size >= MAX_TOPICS) {
      return Promise.reject(new LogBusError('INVALID_ARGUMENT', `too many topics (limit ${MAX_TOPICS}); '${name}' was not created`));
    }
    p = (async () => {
      try {
        let log: TopicLog | undefined;
        if (config.durable) {
          log = await this.store.openTopic(name, {
            segmentBytes: config.segmentBytes,
            maxMessageBytes: config.maxMessageBytes,
            retention: config.retention,
          });
        }
        const state: TopicState = { name, config, log };
        this.topics.set(name, state);
        return state;
      } finally {
        this.opening.delete(name);
      }
    })();
    this.opening.set(name, p);
    return p;
  }

  /**
   * Configures a topic before use; a no-op when it already has that config.
   * A topic in use with another config is refused: its log is open with the old one.
   */
  async createTopic(name: string, config: TopicConfig): Promise<void> {
    validateTopicName(name);
    if (config === null || typeof config !== 'object') {
      throw new LogBusError('INVALID_ARGUMENT', `createTopic('${name}') needs a config object`);
    }
    const resolved = resolveTopicConfig(name, config);
    const pending = this.opening.get(name);
    if (pending) await pending.catch(() => undefined);
    const existing = this.topics.get(name);
    if (existing) {
      if (sameConfig(existing.config, resolved)) {
        if (!this.saved[name]) await this.save(name, config);
        return;
      }
      throw new LogBusError(
        'INVALID_ARGUMENT',
        `topic '${name}' already exists with another config (${describe(existing.config)}); createTopic must come before first use`,
      );
    }
    await this.save(name, config);
    await this.create(name, resolved);
  }

  private async save(name: string, config: TopicConfig): Promise<void> {
    const copy = JSON.parse(JSON.stringify(config)) as TopicConfig;
    await this.store.saveTopicConfig(name, copy);
    this.saved[name] = copy;
  }

  info(): TopicInfo[] {
    return this.all()
      .map(t => ({
        name: t.name,
        durable: t.config.durable,
        earliestOffset: t.log?.earliestOffset ?? 0,
        nextOffset: t.log?.nextOffset ?? 0,
        bytes: t.log?.sizeBytes ?? 0,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Runs retention every `everyMs` (unref'd: it never keeps a process alive). */
  startRetention(everyMs: number, after: () => void): void {
    this.afterRetention = after;
    if (everyMs <= 0) return;
    this.retentionTimer = setInterval(() => void this.runRetention(), everyMs);
    this.retentionTimer.unref();
  }

  async runRetention(now = Date.now()): Promise<void> {
    if (this.retentionRunning) return;
    this.retentionRunning = true;
    try {
      for (const t of this.topics.values()) {
        if (!t.log) continue;
        try {
          const { deletedSegments } = await t.log.enforceRetention(now);
          if (deletedSegments > 0) this.logger.log?.(`retention deleted ${deletedSegments} segment(s) of '${t.name}'`);
        } catch (e) {
          this.logger.error(`retention on '${t.name}' failed: ${(e as Error).message}`);
        }
      }
    } finally {
      this.retentionRunning = false;
    }
    this.afterRetention?.();
  }

  stop(): void {
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    this.retentionTimer = undefined;
  }
}

function describe(c: ResolvedTopicConfig): string {
  return `durable ${c.durable}, segmentBytes ${c.segmentBytes}, maxMessageBytes ${c.maxMessageBytes}, retention ${c.retention.maxAgeMs} ms / ${c.retention.maxBytes} bytes`;
}
