import { crc32Range } from './crc.js';
import type { AppendRecord, LogRecord } from './types.js';

/**
 * On-disk record batch (little endian). One append() call = one batch.
 *
 *   0  crc32     u32  over bytes [4, length): the length field and everything after it
 *   4  length    u32  whole batch, header included
 *   8  magic     u8   BATCH_MAGIC (format version)
 *   9  attrs     u8   0 (reserved)
 *  10  reserved  u16  0
 *  12  count     u32  records in the batch (>= 1)
 *  16  base      f64  offset of the first record (integer < 2^53)
 *  24  timestamp f64  broker append time, ms since the epoch (shared by the batch)
 *  32  records…
 *
 * Record: valueLen u32 | keyLen i32 (-1 = no key) | headerCount u16 |
 *         key utf8 | headerCount × (nameLen u16 | name utf8 | valLen u32 | val utf8) | value
 * A record's offset is base + its index in the batch.
 */
export const BATCH_HEADER = 32;
/** Largest batch one append() may produce; keeps a single write (and u32 positions) bounded. */
export const MAX_BATCH_BYTES = 256 * 1024 * 1024;
export const BATCH_MAGIC = 1;
const RECORD_FIXED = 10;
const HEADER_FIXED = 6;

/** Bytes a record can take at most (utf8 of a UTF-16 string is at most 3 bytes per unit). */
export function recordUpperBound(r: AppendRecord): number {
  let n = RECORD_FIXED + r.value.length;
  if (r.key !== undefined) n += r.key.length * 3;
  const h = r.headers;
  if (h) for (const k in h) n += HEADER_FIXED + (k.length + h[k].length) * 3;
  return n;
}

/**
 * Encodes records as one batch into buf at pos (buf must have room for
 * BATCH_HEADER + the records' upper bounds). Returns the batch length.
 */
export function encodeBatch(buf: Buffer, pos: number, records: AppendRecord[], base: number, timestamp: number): number {
  let p = pos + BATCH_HEADER;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const value = r.value;
    const vl = value.length;
    // Plain byte stores: this is the per-record hot path (no range checks needed, sizes are validated).
    buf[p] = vl;
    buf[p + 1] = vl >>> 8;
    buf[p + 2] = vl >>> 16;
    buf[p + 3] = vl >>> 24;
    const h = r.headers;
    let hc = 0;
    if (h) for (const _ in h) hc++;
    buf[p + 8] = hc;
    buf[p + 9] = hc >>> 8;
    let q = p + RECORD_FIXED;
    let kl = -1;
    if (r.key !== undefined) {
      kl = r.key.length === 0 ? 0 : buf.write(r.key, q, 'utf8');
      q += kl;
    }
    buf[p + 4] = kl;
    buf[p + 5] = kl >> 8;
    buf[p + 6] = kl >> 16;
    buf[p + 7] = kl >> 24;
    if (hc > 0) {
      for (const k in h) {
        const nl = buf.write(k, q + 2, 'utf8');
        buf.writeUInt16LE(nl, q);
        q += 2 + nl;
        const v = h![k];
        const hl = v.length === 0 ? 0 : buf.write(v, q + 4, 'utf8');
        buf.writeUInt32LE(hl, q);
        q += 4 + hl;
      }
    }
    if (vl > 0) buf.set(value, q);
    p = q + vl;
  }
  const length = p - pos;
  buf.writeUInt32LE(length, pos + 4);
  buf[pos + 8] = BATCH_MAGIC;
  buf[pos + 9] = 0;
  buf[pos + 10] = 0;
  buf[pos + 11] = 0;
  buf.writeUInt32LE(records.length, pos + 12);
  buf.writeDoubleLE(base, pos + 16);
  buf.writeDoubleLE(timestamp, pos + 24);
  buf.writeUInt32LE(crc32Range(buf, pos + 4, p), pos);
  return length;
}

/** What a batch header says, once checked. */
export interface BatchInfo {
  length: number;
  count: number;
  base: number;
  timestamp: number;
}

export type BatchCheck = BatchInfo | 'short' | 'bad';

/**
 * Checks the batch at buf[pos, end): 'short' if it does not fit (torn or not
 * yet read), 'bad' if the header or checksum is wrong, else its header.
 * When expectBase is given, a batch with another base offset is 'bad'.
 */
export function checkBatch(buf: Buffer, pos: number, end: number, expectBase?: number): BatchCheck {
  if (end - pos < BATCH_HEADER) return 'short';
  const length = buf.readUInt32LE(pos + 4);
  if (length < BATCH_HEADER + RECORD_FIXED || buf[pos + 8] !== BATCH_MAGIC) return 'bad';
  const count = buf.readUInt32LE(pos + 12);
  const base = buf.readDoubleLE(pos + 16);
  const timestamp = buf.readDoubleLE(pos + 24);
  if (count < 1 || count * RECORD_FIXED > length - BATCH_HEADER || !Number.isSafeInteger(base) || base < 0) return 'bad';
  if (expectBase !== undefined && base !== expectBase) return 'bad';
  if (!Number.isFinite(timestamp)) return 'bad';
  if (end - pos < length) return 'short';
  if (crc32Range(buf, pos + 4, pos + length) !== buf.readUInt32LE(pos)) return 'bad';
  return { length, count, base, timestamp };
}

/**
 * Decodes records of a checked batch, those with offset >= from, into out,
 * until out holds maxRecords or the value bytes pass maxBytes (state.bytes
 * carries the running total; at least one record is always taken).
 * Values are views into buf (no copy). Returns false if it stopped early.
 */
export function decodeBatch(
  buf: Buffer,
  pos: number,
  info: BatchInfo,
  from: number,
  out: LogRecord[],
  maxRecords: number,
  maxBytes: number,
  state: { bytes: number },
): boolean {
  let p = pos + BATCH_HEADER;
  const ts = info.timestamp;
  for (let i = 0; i < info.count; i++) {
    const vl = buf.readUInt32LE(p);
    const kl = buf.readInt32LE(p + 4);
    const hc = buf.readUInt16LE(p + 8);
    let q = p + RECORD_FIXED;
    const offset = info.base + i;
    if (offset < from) {
      if (kl > 0) q += kl;
      for (let j = 0; j < hc; j++) {
        q += 2 + buf.readUInt16LE(q);
        q += 4 + buf.readUInt32LE(q);
      }
      p = q + vl;
      continue;
    }
    if (out.length >= maxRecords) return false;
    if (out.length > 0 && state.bytes + vl > maxBytes) return false;
    let key: string | undefined;
    if (kl >= 0) {
      key = kl === 0 ? '' : buf.toString('utf8', q, q + kl);
      q += kl;
    }
    const headers: Record<string, string> = {};
    for (let j = 0; j < hc; j++) {
      const nl = buf.readUInt16LE(q);
      const name = buf.toString('utf8', q + 2, q + 2 + nl);
      q += 2 + nl;
      const hl = buf.readUInt32LE(q);
      headers[name] = hl === 0 ? '' : buf.toString('utf8', q + 4, q + 4 + hl);
      q += 4 + hl;
    }
    out.push({ offset, timestamp: ts, key, headers, value: buf.subarray(q, q + vl) });
    state.bytes += vl;
    p = q + vl;
  }
  return true;
}
