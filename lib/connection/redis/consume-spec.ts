/** Checks on what consume() and resetGroup() are given, before anything reaches Redis. */
import { LogBusError } from '../../errors.js';
import { GROUP_NAME_RULE, isValidGroupName } from '../../topic.js';
import type { ConsumeSpec } from '../types.js';

/** Group names as on the embedded broker. */
export function validateGroupName(group: unknown): asserts group is string {
  if (!isValidGroupName(group)) {
    throw new LogBusError('INVALID_ARGUMENT', `group ${JSON.stringify(group)} must be ${GROUP_NAME_RULE}`);
  }
}

/** The same rules as the embedded broker's (INVALID_OPTION naming the option). */
export { validateConsumeSpec } from '../consume-spec.js';

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
