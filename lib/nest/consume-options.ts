import type { ConsumeFrom, ConsumeSpec } from '../connection/types.js';
import { LogBusError } from '../errors.js';
import { badOption, DEFAULTS, LIMITS, parseDuration, positiveInt, type Duration } from '../options.js';
import { GROUP_NAME_RULE, isValidGroupName, validateTopicName } from '../topic.js';

/** `@Consume(topic, options)` options (API.md); defaults in DEFAULTS.consume. */
export interface ConsumeOptions {
  /** default: the server's `group`; neither set makes listen() fail */
  group?: string;
  /** where a NEW group starts; an existing group resumes from its committed position */
  from?: ConsumeFrom;
  concurrency?: number;
  ackWaitMs?: Duration;
  maxDeliver?: number;
  /** delay before attempt n+1 after a failure; the last value repeats */
  backoffMs?: Duration[];
  /** default '<topic>.dlq'; false drops after the last attempt */
  deadLetter?: string | false;
}

export interface SubscribeOptions {
  /** queue group: each message goes to one live member, round robin */
  queue?: string;
}

const MAX_BACKOFF_STEPS = 100;

/** Group and queue names end up in store files and engine keys: the group-name rule of lib/topic.ts. */
export function validateName(value: unknown, option: string): string {
  if (!isValidGroupName(value)) throw badOption(option, value, `a name of ${GROUP_NAME_RULE}`);
  return value;
}

function resolveFrom(from: unknown): ConsumeFrom {
  if (from === 'earliest' || from === 'latest') return from;
  if (from !== null && typeof from === 'object') {
    const keys = Object.keys(from);
    const o = from as Record<string, unknown>;
    if (keys.length === 1 && keys[0] === 'offset') return { offset: positiveInt(o.offset, 'from.offset', Number.MAX_SAFE_INTEGER, 0) };
    if (keys.length === 1 && keys[0] === 'timestamp') return { timestamp: positiveInt(o.timestamp, 'from.timestamp', Number.MAX_SAFE_INTEGER, 0) };
  }
  throw badOption('from', from, "'earliest', 'latest', { offset } or { timestamp }");
}

/**
 * Checks every @Consume option and fills the defaults. `group` may still be
 * undefined here (decoration time); the server supplies its own at listen().
 */
export function resolveConsumeOptions(topic: unknown, options: ConsumeOptions | undefined): Omit<ConsumeSpec, 'group'> & { group: string | undefined } {
  validateTopicName(topic);
  const o = options ?? {};
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw badOption('options', o, 'an object');
  const known = new Set(['group', 'from', 'concurrency', 'ackWaitMs', 'maxDeliver', 'backoffMs', 'deadLetter']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw badOption(k, (o as Record<string, unknown>)[k], `one of the options ${[...known].join(', ')}`);

  let backoffMs: number[] = [...DEFAULTS.consume.backoffMs];
  if (o.backoffMs !== undefined) {
    if (!Array.isArray(o.backoffMs) || o.backoffMs.length === 0 || o.backoffMs.length > MAX_BACKOFF_STEPS) {
      throw badOption('backoffMs', o.backoffMs, `an array of 1 to ${MAX_BACKOFF_STEPS} delays`);
    }
    backoffMs = o.backoffMs.map((d, i) => parseDuration(d, `backoffMs[${i}]`));
  }
  let deadLetter: string | false = `${topic}.dlq`;
  if (o.deadLetter === false) deadLetter = false;
  else if (o.deadLetter !== undefined) {
    validateTopicName(o.deadLetter);
    if (o.deadLetter === topic) throw badOption('deadLetter', o.deadLetter, 'a topic other than the consumed one');
    deadLetter = o.deadLetter;
  }
  const ackWaitMs = o.ackWaitMs === undefined ? DEFAULTS.consume.ackWaitMs : parseDuration(o.ackWaitMs, 'ackWaitMs');
  if (ackWaitMs < 1) throw badOption('ackWaitMs', o.ackWaitMs, 'at least 1 ms');
  return {
    topic,
    group: o.group === undefined ? undefined : validateName(o.group, 'group'),
    from: o.from === undefined ? DEFAULTS.consume.from : resolveFrom(o.from),
    concurrency: o.concurrency === undefined ? DEFAULTS.consume.concurrency : positiveInt(o.concurrency, 'concurrency', LIMITS.maxConcurrency),
    ackWaitMs,
    maxDeliver: o.maxDeliver === undefined ? DEFAULTS.consume.maxDeliver : positiveInt(o.maxDeliver, 'maxDeliver', LIMITS.maxDeliver),
    backoffMs,
    deadLetter,
  };
}

/** Re-throws a LogBusError with where it happened in front of its message, keeping the code. */
export function withPlace<T>(place: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof LogBusError) {
      throw new LogBusError(e.code, `${place}: ${e.message.slice(e.code.length + 2)}`, { cause: e });
    }
    throw e;
  }
}
