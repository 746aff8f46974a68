/**
 * produce: validate everything first (a rejected publish stores nothing), then
 * one script call appends to the stream and publishes for push. Batches to the
 * same topic produced in the same turn of the event loop share that call
 * (group commit): each keeps its order and contiguous offsets, and succeeds or
 * fails whole.
 *
 * Retention on Redis happens as part of produce:
 * - maxAgeMs: at most once a second per topic and connection, the script looks at
 *   the oldest message; when it is older than maxAgeMs (Redis time), it
 *   binary-searches the first young offset and trims below it (XTRIM MINID, exact).
 * - maxBytes: XTRIM MAXLEN N (exact: `~` would keep whole 100-entry nodes, too
 *   coarse for small topics) with N = maxBytes / (average body bytes of this
 *   batch + STREAM_ENTRY_OVERHEAD): an estimate of how many messages fit.
 * A topic nobody produces to is not trimmed until the next produce.
 */
import { LogBusError } from '../../errors.js';
import { LIMITS, type ResolvedTopicConfig } from '../../options.js';
import { validateTopicName } from '../../topic.js';
import type { OutgoingMessage, ProduceResult } from '../types.js';
import { asBusError } from './client.js';
import { encodeBody } from './codec.js';
import type { DriverContext } from './context.js';
import { keyBucket } from './keys.js';
import { PRODUCE } from './scripts.js';

/** How often one connection asks the produce script to look for expired messages of a topic. */
const AGE_CHECK_EVERY_MS = 1000;
/** Rough bytes Redis spends per stream entry beyond the body (id, field names, time). */
const STREAM_ENTRY_OVERHEAD = 48;
/** Longest key accepted. */
const MAX_KEY_CHARS = 64 * 1024;

/** One script call carries at most this much: more waits for the next call. */
const MAX_COALESCED_MESSAGES = LIMITS.maxBatchMessages;
const MAX_COALESCED_BYTES = 4 * 1024 * 1024;

interface Waiter {
  count: number;
  resolve(first: number): void;
  reject(e: Error): void;
}

/** produce() calls to one topic within one turn of the event loop, sent as one script call. */
interface Outbound {
  topic: string;
  config: ResolvedTopicConfig;
  args: (string | Buffer)[];
  count: number;
  bytes: number;
  waiters: Waiter[];
  sent: boolean;
}

export class Producer {
  private readonly registered = new Set<string>();
  private readonly outbound = new Map<string, Outbound>();
  private readonly ageCheckedAt = new Map<string, number>();

  constructor(private readonly ctx: DriverContext) {}

  async produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]> {
    validateTopicName(topic);
    if (!Array.isArray(messages)) throw new LogBusError('INVALID_ARGUMENT', `produce to '${topic}' needs an array of messages`);
    if (messages.length === 0) return [];
    if (messages.length > LIMITS.maxBatchMessages) {
      throw new LogBusError('INVALID_ARGUMENT', `a batch to '${topic}' has ${messages.length} messages; at most ${LIMITS.maxBatchMessages} per batch`);
    }
    const config = await this.ctx.configFor(topic);
    const args: (string | Buffer)[] = [];
    let bytes = 0;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      checkMessage(topic, i, m, config.maxMessageBytes);
      const body = encodeBody(m.key, m.headers, m.value);
      bytes += body.length;
      args.push(m.key === undefined ? '' : String(keyBucket(m.key)), body);
    }
    // every check passed: from here the batch is sent whole, alone or with others to this topic
    const first = await new Promise<number>((resolve, reject) => {
      let out = this.outbound.get(topic);
      if (out && (out.count + messages.length > MAX_COALESCED_MESSAGES || out.bytes + bytes > MAX_COALESCED_BYTES)) {
        void this.send(out);
        out = undefined;
      }
      if (!out) {
        const fresh: Outbound = { topic, config, args: [], count: 0, bytes: 0, waiters: [], sent: false };
        this.outbound.set(topic, fresh);
        setImmediate(() => void this.send(fresh));
        out = fresh;
      }
      for (const a of args) out.args.push(a);
      out.count += messages.length;
      out.bytes += bytes;
      out.waiters.push({ count: messages.length, resolve, reject });
    });
    // the script says what it did: -1 is a non-durable topic (no offsets)
    return messages.map((_, i) => ({ topic, offset: first < 0 ? undefined : first + i }));
  }

  private async send(out: Outbound): Promise<void> {
    if (out.sent) return;
    out.sent = true;
    if (this.outbound.get(out.topic) === out) this.outbound.delete(out.topic);
    const { topic, config, count, bytes } = out;
    const maxBytes = config.retention.maxBytes;
    const maxLen = Number.isFinite(maxBytes) ? Math.max(1, Math.floor(maxBytes / (bytes / count + STREAM_ENTRY_OVERHEAD))) : 0;
    const { keys, main } = this.ctx;
    let reply: unknown;
    try {
      if (!this.registered.has(topic)) {
        await main.call('SADD', keys.topicsSet, topic);
        if (this.registered.size < 100_000) this.registered.add(topic);
      }
      reply = await PRODUCE.run(
        main,
        [keys.log(topic), keys.meta(topic), keys.keyBuckets(topic)],
        [keys.pushChannel(topic), config.durable ? '1' : '0', String(maxLen), String(this.ageCheck(topic, config)), ...out.args],
      );
    } catch (e) {
      const err = asBusError(e, `produce to '${topic}'`);
      for (const w of out.waiters) w.reject(err);
      return;
    }
    this.ctx.stats.add('published', count);
    let first = Number((reply as unknown[])[0]);
    for (const w of out.waiters) {
      w.resolve(first);
      if (first >= 0) first += w.count;
    }
  }

  /** maxAgeMs for the script when an age check is due for the topic, else 0 (skip it). */
  private ageCheck(topic: string, config: ResolvedTopicConfig): number {
    const maxAge = config.retention.maxAgeMs;
    if (!config.durable || !Number.isFinite(maxAge)) return 0;
    const now = Date.now();
    const last = this.ageCheckedAt.get(topic) ?? 0;
    if (now - last < Math.min(AGE_CHECK_EVERY_MS, maxAge / 2)) return 0;
    if (this.ageCheckedAt.size >= 100_000) this.ageCheckedAt.clear();
    this.ageCheckedAt.set(topic, now);
    return Math.max(1, Math.floor(maxAge));
  }
}

function checkMessage(topic: string, i: number, m: OutgoingMessage, maxMessageBytes: number): void {
  if (m === null || typeof m !== 'object' || !Buffer.isBuffer(m.value)) {
    throw new LogBusError('INVALID_ARGUMENT', `message ${i} to '${topic}' needs a Buffer value`);
  }
  if (m.value.length > maxMessageBytes) {
    throw new LogBusError(
      'MESSAGE_TOO_LARGE',
      `message ${i} to '${topic}' is ${m.value.length} bytes; the topic's maxMessageBytes is ${maxMessageBytes}`,
    );
  }
  if (m.key !== undefined && (typeof m.key !== 'string' || m.key.length > MAX_KEY_CHARS)) {
    throw new LogBusError('INVALID_ARGUMENT', `message ${i} to '${topic}': key must be a string of at most ${MAX_KEY_CHARS} characters`);
  }
  if (m.headers !== undefined) {
    const h = m.headers as unknown;
    if (h === null || typeof h !== 'object' || Array.isArray(h)) {
      throw new LogBusError('INVALID_ARGUMENT', `message ${i} to '${topic}': headers must be an object of strings`);
    }
    for (const [k, v] of Object.entries(h)) {
      if (typeof v !== 'string') {
        throw new LogBusError('INVALID_ARGUMENT', `message ${i} to '${topic}': header '${k}' must be a string, got ${typeof v}`);
      }
    }
  }
}
