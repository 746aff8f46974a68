import { LogBusError } from '../errors.js';
import { MAX_GROUP_DELIVERIES, type GroupOffset } from './types.js';

/**
 * The optional delivery-count fields of a GroupOffset (deliveredUpTo,
 * deliveries): checked strictly on commit, leniently on load.
 */

/** Why the extra fields are unusable, or undefined when they are fine (or absent). */
export function extrasProblem(g: GroupOffset): string | undefined {
  const h = g.deliveredUpTo;
  if (h !== undefined && (!Number.isSafeInteger(h) || h < 0)) return `deliveredUpTo ${h} must be a non-negative integer`;
  const list = g.deliveries;
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) return 'deliveries must be an array of [offset, count]';
  if (list.length > MAX_GROUP_DELIVERIES) return `deliveries has ${list.length} entries (limit ${MAX_GROUP_DELIVERIES})`;
  if (h === undefined && list.length > 0) return 'deliveries needs deliveredUpTo';
  for (const p of list) {
    if (!Array.isArray(p) || p.length !== 2) return 'deliveries must be an array of [offset, count]';
    const [o, c] = p;
    if (!Number.isSafeInteger(o) || o < 0 || !Number.isSafeInteger(c) || c < 0) return `delivery entry [${o}, ${c}] must be two non-negative integers`;
    if (o >= h!) return `delivery entry for offset ${o} is not below deliveredUpTo ${h}`;
  }
  return undefined;
}

/** Throws INVALID_ARGUMENT for bad extra fields: a commit with them stores nothing. */
export function checkExtras(g: GroupOffset): void {
  const problem = extrasProblem(g);
  if (problem) throw new LogBusError('INVALID_ARGUMENT', `group '${g.group}' on '${g.topic}': ${problem}`);
}

/** A stored copy: the base fields, plus the extra ones only when present (old-format entries stay as they were). */
export function copyGroupOffset(g: GroupOffset): GroupOffset {
  const out: GroupOffset = { topic: g.topic, group: g.group, offset: g.offset };
  if (g.deliveredUpTo !== undefined) out.deliveredUpTo = g.deliveredUpTo;
  if (g.deliveries !== undefined) out.deliveries = g.deliveries.map(([o, c]) => [o, c]);
  return out;
}

/**
 * A loaded entry: bad extra fields are dropped with a warning (the group falls
 * back to in-memory delivery counts); its offset is kept as it is.
 */
export function loadedGroupOffset(g: GroupOffset, warn: (message: string) => void): GroupOffset {
  const problem = extrasProblem(g);
  if (problem === undefined) return copyGroupOffset(g);
  warn(`logbus store: ignoring the saved delivery counts of group '${g.group}' on '${g.topic}' (${problem}); its position ${g.offset} is kept`);
  return { topic: g.topic, group: g.group, offset: g.offset };
}
