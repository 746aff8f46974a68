import { LogBusError } from '../errors.js';
import { BATCH_HEADER, MAX_BATCH_BYTES, recordUpperBound } from './batch-format.js';
import type { AppendRecord } from './types.js';

export const MAX_BATCH_RECORDS = 100_000;
/** Key and headers together, per record: metadata, not payload. */
export const MAX_RECORD_META_BYTES = 64 * 1024;

/**
 * The checks every append passes before anything is assigned or stored, the
 * same for the file log and its in-memory twin. Returns an upper bound of the
 * encoded batch size.
 */
export function validateAppend(topic: string, records: AppendRecord[], now: number, maxMessageBytes: number): number {
  if (!Array.isArray(records) || records.length === 0) throw new LogBusError('INVALID_ARGUMENT', `append to '${topic}' needs at least one record`);
  if (records.length > MAX_BATCH_RECORDS) {
    throw new LogBusError('INVALID_ARGUMENT', `append of ${records.length} records to '${topic}' exceeds ${MAX_BATCH_RECORDS} per batch; split it`);
  }
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new LogBusError('INVALID_ARGUMENT', `append timestamp ${now} is not a finite number`);
  let bound = BATCH_HEADER;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (!r || !(r.value instanceof Uint8Array)) throw new LogBusError('INVALID_ARGUMENT', `record ${i} on '${topic}' needs a Buffer value`);
    if (r.value.length > maxMessageBytes) {
      throw new LogBusError(
        'MESSAGE_TOO_LARGE',
        `message of ${r.value.length} bytes on '${topic}' exceeds maxMessageBytes ${maxMessageBytes}; send smaller messages or raise the topic's maxMessageBytes`,
      );
    }
    if (r.key !== undefined && typeof r.key !== 'string') throw new LogBusError('INVALID_ARGUMENT', `record ${i} on '${topic}': key must be a string`);
    const h = r.headers;
    if (h !== undefined) {
      if (h === null || typeof h !== 'object') throw new LogBusError('INVALID_ARGUMENT', `record ${i} on '${topic}': headers must be an object`);
      for (const k in h) {
        if (typeof h[k] !== 'string') throw new LogBusError('INVALID_ARGUMENT', `record ${i} on '${topic}': header '${k}' must be a string`);
      }
    }
    const ub = recordUpperBound(r);
    // The bound over-counts non-ASCII text 3×; only a large one is measured exactly.
    if (ub - r.value.length > MAX_RECORD_META_BYTES && metaBytes(r) > MAX_RECORD_META_BYTES) {
      throw new LogBusError('MESSAGE_TOO_LARGE', `key and headers of record ${i} on '${topic}' exceed ${MAX_RECORD_META_BYTES} bytes`);
    }
    bound += ub;
  }
  if (bound > MAX_BATCH_BYTES) {
    throw new LogBusError('MESSAGE_TOO_LARGE', `batch of about ${bound} bytes on '${topic}' exceeds ${MAX_BATCH_BYTES}; split it`);
  }
  return bound;
}

function metaBytes(r: AppendRecord): number {
  let n = r.key ? Buffer.byteLength(r.key) : 0;
  if (r.headers) for (const k in r.headers) n += Buffer.byteLength(k) + Buffer.byteLength(r.headers[k]) + 6;
  return n;
}
