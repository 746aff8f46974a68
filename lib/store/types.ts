import type { FsyncMode, ResolvedTopicConfig, TopicConfig } from '../options.js';

/** What the broker hands the log for one message. */
export interface AppendRecord {
  key: string | undefined;
  headers: Record<string, string> | undefined;
  value: Buffer;
}

/** One stored message. */
export interface LogRecord {
  offset: number;
  /** Broker append time, ms since the epoch. */
  timestamp: number;
  key: string | undefined;
  headers: Record<string, string>;
  value: Buffer;
}

export type TopicLogConfig = Pick<ResolvedTopicConfig, 'segmentBytes' | 'maxMessageBytes' | 'retention'>;

export interface AppendResult {
  /** Offset of the first record; the batch has baseOffset .. baseOffset+n-1, contiguous. */
  baseOffset: number;
  /** Broker append timestamp shared by the batch. */
  timestamp: number;
  /**
   * Resolves once the batch is written to the OS and, per the fsync policy,
   * synced (group commit: shared by every append in flight). Rejects with
   * LogBusError STORAGE; the log then refuses appends until reopened.
   */
  durable: Promise<void>;
}

export interface TopicLog {
  readonly name: string;
  /** First offset still readable (moves forward with retention). */
  readonly earliestOffset: number;
  /** Offset the next appended record gets. */
  readonly nextOffset: number;
  /** Bytes on disk (all segments). */
  readonly sizeBytes: number;

  /**
   * Appends a batch, all or nothing. Validation happens synchronously before
   * anything is assigned: throws MESSAGE_TOO_LARGE, or STORAGE if the log has
   * failed earlier. Offsets are assigned at call time, in call order.
   */
  append(records: AppendRecord[], now?: number): AppendResult;

  /**
   * Records from `from` (clamped up to earliestOffset), oldest first, at most
   * `maxRecords` and about `maxBytes`. Never returns records past what has been
   * written to the OS. Empty when from >= nextOffset.
   */
  read(from: number, maxRecords: number, maxBytes?: number): Promise<LogRecord[]>;

  /** First offset whose timestamp >= ts (nextOffset if none). */
  offsetForTimestamp(ts: number): Promise<number>;

  /** Deletes whole sealed segments past maxAgeMs / over maxBytes. Never the active one. */
  enforceRetention(now?: number): Promise<{ deletedSegments: number }>;

  /** Waits for everything appended so far to be durable per the policy. */
  flush(): Promise<void>;
}

export interface GroupOffset {
  topic: string;
  group: string;
  /** First offset not yet acked in order. */
  offset: number;
  /**
   * Optional (absent in old checkpoints): no offset >= this has ever been
   * handed to a member. Offsets in [offset, deliveredUpTo) count as delivered
   * once unless `deliveries` says otherwise.
   */
  deliveredUpTo?: number;
  /** Optional: [offset, count] for offsets below deliveredUpTo whose delivery count is not 1; at most MAX_GROUP_DELIVERIES. */
  deliveries?: Array<[offset: number, count: number]>;
}

/** Most `deliveries` entries per group (the broker tracks at most 8192 offsets past the committed one). */
export const MAX_GROUP_DELIVERIES = 8192;

export interface StoreOptions {
  /** Directory, or ':memory:' for the in-memory twin. */
  dataDir: string;
  fsync: FsyncMode;
  /** Defaults to 100 ms for 'interval'. */
  fsyncIntervalMs?: number;
  logger?: StoreLogger;
}

export interface StoreLogger {
  warn(message: string): void;
  error(message: string): void;
}

export interface LogStore {
  readonly dataDir: string;

  /** Topics that exist in the store (found at open or created since). */
  topicNames(): string[];

  /** Opens (creating if absent) the log of a durable topic. Idempotent per name. */
  openTopic(name: string, config: TopicLogConfig): Promise<TopicLog>;

  /** Deletes a topic's log entirely. */
  deleteTopic(name: string): Promise<void>;

  /** Topic configs saved by createTopic, persisted across restarts. */
  loadTopicConfigs(): Promise<Record<string, TopicConfig>>;
  saveTopicConfig(name: string, config: TopicConfig): Promise<void>;

  /** Committed group positions, as last saved. Missing/corrupt checkpoint: logged warning, never a silent reset. */
  loadGroupOffsets(): Promise<GroupOffset[]>;
  /** Saves positions crash-safely (batched; later calls may coalesce). Resolves once durable. */
  commitGroupOffsets(entries: GroupOffset[]): Promise<void>;
  deleteGroupOffset(topic: string, group: string): Promise<void>;

  /** Flushes every log and checkpoint, releases the dataDir lock. */
  close(): Promise<void>;
}
