import { describe, expect, it } from '@jest/globals';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { BATCH_HEADER, checkBatch, decodeBatch, encodeBatch, recordUpperBound } from '../../lib/store/batch-format.js';
import { crc32Range } from '../../lib/store/crc.js';
import type { AppendRecord, LogRecord } from '../../lib/store/types.js';

const recordArb = fc.record({
  key: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
  headers: fc.option(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }), { nil: undefined }),
  value: fc.uint8Array({ maxLength: 400 }).map(a => Buffer.from(a)),
});

function encode(records: AppendRecord[], base: number, ts: number): Buffer {
  const buf = Buffer.alloc(BATCH_HEADER + records.reduce((n, r) => n + recordUpperBound(r), 0));
  const len = encodeBatch(buf, 0, records, base, ts);
  return buf.subarray(0, len);
}

describe('record batch format', () => {
  it('CRC-32 of any range equals zlib.crc32 (JS path for small, native for large)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1000 }), fc.nat(20), (bytes, skip) => {
        const buf = Buffer.concat([Buffer.alloc(skip, 9), Buffer.from(bytes)]);
        expect(crc32Range(buf, skip, buf.length)).toBe(crc32(Buffer.from(bytes)));
      }),
    );
  });

  it('round-trips any batch, and any flipped byte or cut makes it bad or short, never data', () => {
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 1, maxLength: 6 }),
        fc.nat(1e9),
        fc.integer({ min: 0, max: 2e12 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (records, base, ts, at, xor) => {
          const buf = encode(records, base, ts);
          const info = checkBatch(buf, 0, buf.length, base);
          if (typeof info === 'string') throw new Error(`valid batch judged ${info}`);
          expect(info).toEqual({ length: buf.length, count: records.length, base, timestamp: ts });
          const out: LogRecord[] = [];
          decodeBatch(buf, 0, info, 0, out, Infinity, Infinity, { bytes: 0 });
          expect(out.map(r => ({ ...r, value: r.value.toString('hex') }))).toEqual(
            records.map((r, i) => ({ offset: base + i, timestamp: ts, key: r.key, headers: r.headers ?? {}, value: r.value.toString('hex') })),
          );
          const flipped = Buffer.from(buf);
          flipped[at % buf.length] ^= xor;
          expect(typeof checkBatch(flipped, 0, flipped.length, base)).toBe('string');
          const cut = at % buf.length;
          expect(typeof checkBatch(buf, 0, cut, base)).toBe('string');
          // A batch where another offset is expected is not accepted either.
          expect(checkBatch(buf, 0, buf.length, base + 1)).toBe('bad');
        },
      ),
      { numRuns: 300 },
    );
  });
});
