import { LogBusError } from '../errors.js';
import type { TopicConfig } from '../options.js';
import { validateTopicName } from '../topic.js';
import { validateAppend } from './append-validation.js';
import { checkExtras, copyGroupOffset } from './group-offset-extras.js';
import type {
  AppendRecord,
  AppendResult,
  GroupOffset,
  LogRecord,
  LogStore,
  TopicLog,
  TopicLogConfig,
} from './types.js';

const RESOLVED: Promise<void> = Promise.resolve();
/** Rough per-record overhead, so sizeBytes and maxBytes retention behave like the file log. */
const RECORD_OVERHEAD = 32;

interface MemSegment {
  baseOffset: number;
  records: LogRecord[];
  bytes: number;
  /** Newest record time (the clock can step back, so not simply the last one's). */
  lastTimestamp: number;
}

/** The in-memory twin of a topic log (dataDir ':memory:'): same rules, no files. */
export class MemoryTopicLog implements TopicLog {
  private readonly segments: MemSegment[];
  private next = 0;
  private total = 0;

  constructor(
    readonly name: string,
    private readonly config: TopicLogConfig,
  ) {
    this.segments = [{ baseOffset: 0, records: [], bytes: 0, lastTimestamp: -Infinity }];
  }

  get earliestOffset(): number {
    return this.segments[0].baseOffset;
  }
  get nextOffset(): number {
    return this.next;
  }
  get sizeBytes(): number {
    return this.total;
  }

  append(records: AppendRecord[], now = Date.now()): AppendResult {
    validateAppend(this.name, records, now, this.config.maxMessageBytes);
    const sizes = records.map(r => recordBytes(r));
    const baseOffset = this.next;
    for (let i = 0; i < records.length; i++) {
      let seg = this.segments[this.segments.length - 1];
      if (seg.bytes > 0 && seg.bytes + sizes[i] > this.config.segmentBytes) {
        seg = { baseOffset: this.next, records: [], bytes: 0, lastTimestamp: -Infinity };
        this.segments.push(seg);
      }
      const r = records[i];
      // Copies, like the file log: a caller reusing its buffer must not change what was stored.
      seg.records.push({ offset: this.next++, timestamp: now, key: r.key, headers: r.headers ? { ...r.headers } : {}, value: Buffer.from(r.value) });
      seg.bytes += sizes[i];
      if (now > seg.lastTimestamp) seg.lastTimestamp = now;
      this.total += sizes[i];
    }
    return { baseOffset, timestamp: now, durable: RESOLVED };
  }

  async read(from: number, maxRecords: number, maxBytes = Infinity): Promise<LogRecord[]> {
    const out: LogRecord[] = [];
    let bytes = 0;
    let off = Math.max(from, this.earliestOffset);
    let si = this.segmentIndexFor(off);
    while (si < this.segments.length && out.length < maxRecords) {
      const seg = this.segments[si];
      const r = seg.records[off - seg.baseOffset];
      if (!r) {
        si++;
        continue;
      }
      bytes += r.value.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(r);
      off++;
    }
    return out;
  }

  async offsetForTimestamp(ts: number): Promise<number> {
    for (const seg of this.segments) {
      if (seg.records.length === 0 || seg.lastTimestamp < ts) continue;
      for (const r of seg.records) if (r.timestamp >= ts) return r.offset;
    }
    return this.next;
  }

  async enforceRetention(now = Date.now()): Promise<{ deletedSegments: number }> {
    let deleted = 0;
    // Whole sealed segments only: the last one is active.
    while (this.segments.length > 1) {
      const seg = this.segments[0];
      const tooOld = now - seg.lastTimestamp > this.config.retention.maxAgeMs;
      const tooBig = this.total > this.config.retention.maxBytes;
      if (!tooOld && !tooBig) break;
      this.segments.shift();
      this.total -= seg.bytes;
      deleted++;
    }
    return { deletedSegments: deleted };
  }

  flush(): Promise<void> {
    return RESOLVED;
  }

  private segmentIndexFor(offset: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid].baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function recordBytes(r: AppendRecord): number {
  let n = RECORD_OVERHEAD + r.value.length + (r.key ? Buffer.byteLength(r.key) : 0);
  if (r.headers) for (const k in r.headers) n += k.length + r.headers[k].length + 8;
  return n;
}

export class MemoryStore implements LogStore {
  readonly dataDir = ':memory:';
  private readonly logs = new Map<string, MemoryTopicLog>();
  private readonly configs: Record<string, TopicConfig> = {};
  private readonly offsets = new Map<string, GroupOffset>();

  topicNames(): string[] {
    return [...this.logs.keys()];
  }

  async openTopic(name: string, config: TopicLogConfig): Promise<TopicLog> {
    validateTopicName(name);
    let log = this.logs.get(name);
    if (!log) {
      log = new MemoryTopicLog(name, config);
      this.logs.set(name, log);
    }
    return log;
  }

  async deleteTopic(name: string): Promise<void> {
    this.logs.delete(name);
  }

  async loadTopicConfigs(): Promise<Record<string, TopicConfig>> {
    return { ...this.configs };
  }

  async saveTopicConfig(name: string, config: TopicConfig): Promise<void> {
    this.configs[name] = config;
  }

  async loadGroupOffsets(): Promise<GroupOffset[]> {
    return [...this.offsets.values()].map(copyGroupOffset);
  }

  async commitGroupOffsets(entries: GroupOffset[]): Promise<void> {
    for (const e of entries) checkExtras(e);
    for (const e of entries) this.offsets.set(`${e.topic}\u0000${e.group}`, copyGroupOffset(e));
  }

  async deleteGroupOffset(topic: string, group: string): Promise<void> {
    this.offsets.delete(`${topic}\u0000${group}`);
  }

  async close(): Promise<void> {}
}
