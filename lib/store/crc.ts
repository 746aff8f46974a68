import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (IEEE, the same as zlib.crc32) of buf[start, end). Small ranges use
 * slicing-by-8 in JS, which beats the native call's fixed cost below a few
 * hundred bytes (most single-record batches); larger ones go to zlib.
 */
const TABLE = new Int32Array(256 * 8);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[i] = c;
}
for (let i = 0; i < 256; i++) {
  for (let t = 1; t < 8; t++) TABLE[t * 256 + i] = (TABLE[(t - 1) * 256 + i] >>> 8) ^ TABLE[TABLE[(t - 1) * 256 + i] & 0xff];
}
const JS_MAX = 320;

export function crc32Range(buf: Buffer, start: number, end: number): number {
  if (end - start > JS_MAX) return zlibCrc32(buf.subarray(start, end));
  const T = TABLE;
  let c = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = c ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24));
    c =
      T[1792 + (a & 0xff)] ^
      T[1536 + ((a >>> 8) & 0xff)] ^
      T[1280 + ((a >>> 16) & 0xff)] ^
      T[1024 + (a >>> 24)] ^
      T[768 + buf[i + 4]] ^
      T[512 + buf[i + 5]] ^
      T[256 + buf[i + 6]] ^
      T[buf[i + 7]];
  }
  for (; i < end; i++) c = T[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
