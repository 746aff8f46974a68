/** Where consume() starts a new group, as Redis arguments (the spec and group name checks are ../consume-spec.ts). */
import { LogBusError } from '../../errors.js';
import type { ConsumeSpec } from '../types.js';

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
