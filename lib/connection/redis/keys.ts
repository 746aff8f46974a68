/**
 * Every Redis key and channel the driver uses, in one place.
 *
 * Key layout (P = options.prefix, default 'logbus'; T = a topic name):
 *
 *   P:topics                     set    names of every topic ever produced to or created
 *   P:topic-options              hash   `topics` option key → JSON config, shared by all connections
 *   P:stats, P:stats:dropped     hash   bus-wide counters (stats()); dropped per subscriber
 *   P:{t:T}:log                  stream the topic's log. Entry id `<offset>-1`, so ids are the
 *                                       offsets themselves (monotonic, no gaps) and XRANGE by offset
 *                                       is O(log n). Fields: t = broker time (ms, Redis TIME),
 *                                       m = body (codec.ts), p = previous offset whose key fell in
 *                                       the same key bucket (keyed messages only; key ordering)
 *   P:{t:T}:meta                 hash   next (next offset), pseq (push sequence of non-durable
 *                                       topics), bytes/count (bodies appended, for size estimates),
 *                                       config (JSON TopicConfig saved by createTopic)
 *   P:{t:T}:kb                   hash   key bucket → last offset produced with a key in that bucket
 *   P:{t:T}:m:<group>            zset   live consumers of a group → expiry (Redis time, ms)
 *   P:q:<pattern>#<queue>        zset   live members of a push queue group → expiry
 *   P:{r:<pattern>}:q            list   pending RPC requests for a pattern (Cluster: P:{r}:q:<pattern>)
 *
 * Channels: P:p:T (push fan-out of topic T), P:r:<pattern> (RPC responders subscribe here;
 * its subscriber count is the number of live responders; Cluster: the sharded channel
 * P:{r}:alive:<pattern>), P:reply:<clientId> (replies to one
 * client only), P:qc (queue-group membership changed), P:ge:T:<group> (a group's member
 * left or the group was reset: its consumers act at once instead of at their next poll).
 *
 * Cluster: all keys of one topic share the hash tag `{t:T}`, so the produce script and the
 * group scripts touch one slot; RPC lists share `{r}`. The topics set, options, stats and
 * queue-group sets are touched only by single-key commands.
 */
import { LogBusError } from '../../errors.js';

export class RedisKeys {
  readonly topicsSet: string;
  readonly topicOptions: string;
  readonly stats: string;
  readonly droppedStats: string;
  readonly pushChannelPrefix: string;
  readonly queueChangedChannel: string;

  /** cluster: all RPC lists share one slot, so one blocking pop can wait on all of them */
  constructor(
    readonly prefix: string,
    readonly cluster = false,
  ) {
    if (/[{}]/.test(prefix)) {
      // a brace in the prefix would become the Cluster hash tag and split a topic's keys
      throw new LogBusError('INVALID_OPTION', `option 'prefix' is ${JSON.stringify(prefix)}; it must not contain '{' or '}'`);
    }
    this.topicsSet = `${prefix}:topics`;
    this.topicOptions = `${prefix}:topic-options`;
    this.stats = `${prefix}:stats`;
    this.droppedStats = `${prefix}:stats:dropped`;
    this.pushChannelPrefix = `${prefix}:p:`;
    this.queueChangedChannel = `${prefix}:qc`;
  }

  log(topic: string): string {
    return `${this.prefix}:{t:${topic}}:log`;
  }
  meta(topic: string): string {
    return `${this.prefix}:{t:${topic}}:meta`;
  }
  keyBuckets(topic: string): string {
    return `${this.prefix}:{t:${topic}}:kb`;
  }
  groupMembers(topic: string, group: string): string {
    return `${this.prefix}:{t:${topic}}:m:${group}`;
  }
  /** Channel: a member of the group left, or the group was reset. */
  groupEvents(topic: string, group: string): string {
    return `${this.prefix}:ge:${topic}:${group}`;
  }
  queueMembers(pattern: string, queue: string): string {
    return `${this.prefix}:q:${pattern}#${queue}`;
  }
  pushChannel(topic: string): string {
    return this.pushChannelPrefix + topic;
  }
  /** PSUBSCRIBE glob for a wildcard pattern; matches a superset, the driver filters exactly. */
  pushGlob(pattern: string): string {
    const literal = escapeGlob(this.pushChannelPrefix);
    return literal + pattern.split('.').map(s => (s === '*' || s === '>' ? '*' : escapeGlob(s))).join('.');
  }
  rpcQueue(pattern: string): string {
    return this.cluster ? `${this.prefix}:{r}:q:${pattern}` : `${this.prefix}:{r:${pattern}}:q`;
  }
  /** Cluster: a sharded channel (SSUBSCRIBE) in the RPC slot, so the request script counts every responder. */
  rpcAlive(pattern: string): string {
    return this.cluster ? `${this.prefix}:{r}:alive:${pattern}` : `${this.prefix}:r:${pattern}`;
  }
  replyChannel(clientId: string): string {
    return `${this.prefix}:reply:${clientId}`;
  }
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, m => '\\' + m);
}

/** Stream id of an offset. */
export function idOf(offset: number): string {
  return `${offset}-1`;
}

/** The id just below an offset: a group whose last-delivered id is this reads `offset` next. */
export function idBefore(offset: number): string {
  return `${offset}-0`;
}

/** Offset of a stream id `<offset>-1`. */
export function offsetOf(id: string | Buffer): number {
  const s = typeof id === 'string' ? id : id.toString('latin1');
  const dash = s.indexOf('-');
  return Number(dash < 0 ? s : s.slice(0, dash));
}

/**
 * First offset a group has not been handed yet, from its last-delivered id:
 * `n-1` (offset n delivered) → n + 1; `n-0` (created before offset n) → n.
 */
export function nextAfterId(id: string): number {
  const [ms, seq] = id.split('-');
  const n = Number(ms);
  return Number(seq ?? '0') >= 1 ? n + 1 : n;
}

/** Key buckets: same-key messages are chained per bucket (a superset of per key), bounded in number. */
export const KEY_BUCKETS = 4096;

/** FNV-1a over the key's UTF-16 code units; stable across processes. */
export function keyBucket(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % KEY_BUCKETS;
}
