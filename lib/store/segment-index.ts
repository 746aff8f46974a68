import { crc32 } from 'node:zlib';

/**
 * The sparse index of one segment, kept in memory and mirrored to
 * `<base>.index`. It is both the offset index and the time index: one entry
 * about every INDEX_INTERVAL bytes of log, each saying "the batch starting at
 * byte `pos` has first offset base+`rel`, and every record before `pos` has a
 * timestamp <= `maxTsBefore`". maxTsBefore never decreases, so both an offset
 * and a timestamp are found with one binary search and a scan of at most
 * ~INDEX_INTERVAL bytes.
 *
 * An entry whose pos equals the log file's size is the segment's end marker:
 * written when a segment is sealed and on clean close, it lets open() trust a
 * segment without scanning it. The index is derived data: anything missing,
 * truncated or failing its per-entry CRC is rebuilt from the log.
 *
 * Entry (20 bytes, LE): rel u32 | pos u32 | maxTsBefore f64 | crc32 of the first 16 bytes.
 */
export const INDEX_ENTRY = 20;
export const INDEX_INTERVAL = 4096;

export class SegmentIndex {
  rel: number[] = [];
  pos: number[] = [];
  maxTs: number[] = [];

  get length(): number {
    return this.rel.length;
  }

  push(rel: number, pos: number, maxTsBefore: number): void {
    this.rel.push(rel);
    this.pos.push(pos);
    this.maxTs.push(maxTsBefore);
  }

  /** Keeps the first n entries. */
  truncate(n: number): void {
    this.rel.length = n;
    this.pos.length = n;
    this.maxTs.length = n;
  }

  lastPos(): number {
    return this.pos.length ? this.pos[this.pos.length - 1] : -1;
  }

  /** Index of the last entry with rel <= rel (entry 0 is always rel 0, pos 0). */
  floorByRel(rel: number): number {
    let lo = 0;
    let hi = this.rel.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.rel[mid] <= rel) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Index of the last entry whose maxTsBefore < ts: records before it are all older than ts. */
  floorByTime(ts: number): number {
    let lo = 0;
    let hi = this.maxTs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.maxTs[mid] < ts) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Entries [from, length) encoded for the file. */
  encode(from = 0): Buffer {
    const n = this.rel.length - from;
    const buf = Buffer.allocUnsafe(Math.max(0, n) * INDEX_ENTRY);
    for (let i = 0; i < n; i++) encodeEntry(buf, i * INDEX_ENTRY, this.rel[from + i], this.pos[from + i], this.maxTs[from + i]);
    return buf;
  }

  /**
   * Parses an index file: the longest valid prefix (CRC ok, rel and pos
   * increasing, pos <= logSize, first entry at 0). Returns it and whether the
   * whole file was valid.
   */
  static parse(buf: Buffer, logSize: number): { index: SegmentIndex; clean: boolean } {
    const index = new SegmentIndex();
    const n = Math.floor(buf.length / INDEX_ENTRY);
    for (let i = 0; i < n; i++) {
      const e = decodeEntry(buf, i * INDEX_ENTRY);
      if (!e) break;
      const prev = index.length - 1;
      const ordered =
        prev < 0
          ? e.rel === 0 && e.pos === 0
          : e.rel > index.rel[prev] && e.pos > index.pos[prev] && e.maxTs >= index.maxTs[prev];
      if (!ordered || e.pos > logSize) break;
      index.push(e.rel, e.pos, e.maxTs);
    }
    return { index, clean: index.length === n && buf.length === n * INDEX_ENTRY };
  }
}

export function encodeEntry(buf: Buffer, at: number, rel: number, pos: number, maxTs: number): void {
  buf.writeUInt32LE(rel, at);
  buf.writeUInt32LE(pos, at + 4);
  buf.writeDoubleLE(maxTs, at + 8);
  buf.writeUInt32LE(crc32(buf.subarray(at, at + 16)), at + 16);
}

export function decodeEntry(buf: Buffer, at: number): { rel: number; pos: number; maxTs: number } | undefined {
  if (buf.length - at < INDEX_ENTRY) return undefined;
  if (crc32(buf.subarray(at, at + 16)) !== buf.readUInt32LE(at + 16)) return undefined;
  const maxTs = buf.readDoubleLE(at + 8);
  if (Number.isNaN(maxTs)) return undefined;
  return { rel: buf.readUInt32LE(at), pos: buf.readUInt32LE(at + 4), maxTs };
}
