/** A stream entry of a topic's log (keys.ts: fields t, m, p) as the driver reads it. */
import { LogBusError } from '../../errors.js';
import { decodeBody } from './codec.js';
import { offsetOf } from './keys.js';

/** As Redis returns it with buffer replies; fields are null for an entry deleted while pending (Redis 6.2). */
export type RawEntry = [Buffer, Buffer[] | null];

export interface StreamEntry {
  readonly offset: number;
  readonly timestamp: number;
  readonly key: string | undefined;
  readonly headers: Record<string, string>;
  readonly value: Buffer;
  /** previous offset whose key fell in the same key bucket, if any */
  readonly prev: number | undefined;
}

export function parseStreamEntry(id: Buffer, fields: Buffer[]): StreamEntry {
  let t = 0;
  let m: Buffer | undefined;
  let p: number | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const f = fields[i].toString('latin1');
    if (f === 't') t = Number(fields[i + 1].toString('latin1'));
    else if (f === 'm') m = fields[i + 1];
    else if (f === 'p') p = Number(fields[i + 1].toString('latin1'));
  }
  if (!m) throw new LogBusError('CORRUPT', `stream entry ${id.toString()} has no body`);
  const body = decodeBody(m);
  return { offset: offsetOf(id), timestamp: t, key: body.key, headers: body.headers, value: body.value, prev: p };
}
