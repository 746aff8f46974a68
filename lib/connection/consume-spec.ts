/** The consume spec and group name rules every driver applies (embedded broker, Redis), so bad input fails alike everywhere. */
import { LogBusError } from '../errors.js';
import { badOption, LIMITS } from '../options.js';
import { GROUP_NAME_RULE, isValidGroupName, validateTopicName } from '../topic.js';
import type { ConsumeSpec } from './types.js';

/** A group name given on its own (resetGroup), as the embedded broker and Redis both check it. */
export function validateGroupName(group: unknown): asserts group is string {
  if (!isValidGroupName(group)) {
    throw new LogBusError('INVALID_ARGUMENT', `group ${JSON.stringify(group)} must be ${GROUP_NAME_RULE}`);
  }
}

/** Checks a consume spec completely before anything is created. */
export function validateConsumeSpec(spec: ConsumeSpec): void {
  if (spec === null || typeof spec !== 'object') throw new LogBusError('INVALID_ARGUMENT', 'consume needs a spec object');
  validateTopicName(spec.topic);
  if (!isValidGroupName(spec.group)) {
    throw badOption('group', spec.group, `a name of ${GROUP_NAME_RULE}`);
  }
  const intIn = (v: unknown, name: string, min: number, max: number): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw badOption(name, v, `an integer from ${min} to ${max}`);
  };
  intIn(spec.concurrency, 'concurrency', 1, LIMITS.maxConcurrency);
  intIn(spec.maxDeliver, 'maxDeliver', 1, LIMITS.maxDeliver);
  if (typeof spec.ackWaitMs !== 'number' || !Number.isFinite(spec.ackWaitMs) || spec.ackWaitMs <= 0) {
    throw badOption('ackWaitMs', spec.ackWaitMs, 'a positive number of milliseconds');
  }
  if (!Array.isArray(spec.backoffMs) || spec.backoffMs.length > 100 || spec.backoffMs.some(b => typeof b !== 'number' || !Number.isFinite(b) || b < 0)) {
    throw badOption('backoffMs', spec.backoffMs, 'an array of at most 100 non-negative numbers of milliseconds');
  }
  if (spec.deadLetter !== false) {
    try {
      validateTopicName(spec.deadLetter);
    } catch {
      throw badOption('deadLetter', spec.deadLetter, 'a topic name or false');
    }
    if (spec.deadLetter === spec.topic) throw badOption('deadLetter', spec.deadLetter, 'a topic other than the consumed one');
  }
  const f = spec.from;
  const fromOk =
    f === 'earliest' ||
    f === 'latest' ||
    (f !== null &&
      typeof f === 'object' &&
      (('offset' in f && Number.isInteger(f.offset) && f.offset >= 0) || ('timestamp' in f && Number.isFinite(f.timestamp))));
  if (!fromOk) throw badOption('from', f, "'earliest', 'latest', { offset } or { timestamp }");
}
