/** Checks on what consume() and resetGroup() are given, before anything reaches Redis. */
import { LogBusError } from '../../errors.js';
import { LIMITS } from '../../options.js';
import { GROUP_NAME_RULE, isValidGroupName, validateTopicName } from '../../topic.js';
import type { ConsumeSpec } from '../types.js';

/** Group names as on the embedded broker. */
export function validateGroupName(group: unknown): asserts group is string {
  if (!isValidGroupName(group)) {
    throw new LogBusError('INVALID_ARGUMENT', `group ${JSON.stringify(group)} must be ${GROUP_NAME_RULE}`);
  }
}

export function validateConsumeSpec(spec: ConsumeSpec): void {
  validateTopicName(spec.topic);
  const bad = (what: string) => new LogBusError('INVALID_ARGUMENT', `consume '${spec.topic}': ${what}`);
  validateGroupName(spec.group);
  if (!Number.isInteger(spec.concurrency) || spec.concurrency < 1 || spec.concurrency > LIMITS.maxConcurrency) {
    throw bad(`concurrency must be an integer from 1 to ${LIMITS.maxConcurrency}`);
  }
  if (!Number.isInteger(spec.maxDeliver) || spec.maxDeliver < 1 || spec.maxDeliver > LIMITS.maxDeliver) {
    throw bad(`maxDeliver must be an integer from 1 to ${LIMITS.maxDeliver}`);
  }
  if (!(spec.ackWaitMs > 0) || !Number.isFinite(spec.ackWaitMs)) throw bad('ackWaitMs must be a positive number');
  if (!Array.isArray(spec.backoffMs) || spec.backoffMs.some(b => !(b >= 0) || !Number.isFinite(b))) {
    throw bad('backoffMs must be an array of non-negative numbers');
  }
  if (spec.deadLetter !== false) validateTopicName(spec.deadLetter);
}

/** Redis arguments for where a NEW group starts. */
export function fromArgs(from: ConsumeSpec['from']): [string, string] {
  if (from === 'earliest' || from === 'latest') return [from, ''];
  if (from && typeof from === 'object' && 'offset' in from && Number.isInteger(from.offset) && from.offset >= 0) {
    return ['offset', String(from.offset)];
  }
  if (from && typeof from === 'object' && 'timestamp' in from && Number.isFinite(from.timestamp)) {
    return ['timestamp', String(Math.floor(from.timestamp))];
  }
  throw new LogBusError('INVALID_ARGUMENT', `'from' must be 'earliest', 'latest', { offset } or { timestamp }; got ${JSON.stringify(from)}`);
}
