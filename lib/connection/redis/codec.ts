/**
 * Byte layouts the driver puts into Redis. A message body is encoded once by
 * the producer; the produce script stores that same body in the stream and
 * publishes it, prefixed with what only Redis knows (offset, time, sequence).
 *
 *   body:          u32 keyLen+1 (0 = no key) | key utf8 | u32 headersLen | headers JSON | value
 *   push payload:  "<first offset or empty>,<timestamp>,<first seq>,<count>," then per message
 *                  "<body length>," body   (consecutive offsets and seqs)
 *   rpc request:   "<clientId>,<requestId>,<deadline ms>," value
 *   rpc reply:     "<requestId>,<d|c>," value        (d = done, c = more to come)
 */
import { LogBusError } from '../../errors.js';

export interface Body {
  key: string | undefined;
  headers: Record<string, string>;
  value: Buffer;
}

const EMPTY_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

export function encodeBody(key: string | undefined, headers: Record<string, string> | undefined, value: Buffer): Buffer {
  const keyBuf = key === undefined ? undefined : Buffer.from(key, 'utf8');
  const hdrBuf = headers && Object.keys(headers).length > 0 ? Buffer.from(JSON.stringify(headers), 'utf8') : undefined;
  const head = Buffer.allocUnsafe(8 + (keyBuf?.length ?? 0));
  head.writeUInt32BE(keyBuf ? keyBuf.length + 1 : 0, 0);
  if (keyBuf) keyBuf.copy(head, 4);
  head.writeUInt32BE(hdrBuf?.length ?? 0, 4 + (keyBuf?.length ?? 0));
  return Buffer.concat(hdrBuf ? [head, hdrBuf, value] : [head, value]);
}

export function decodeBody(buf: Buffer): Body {
  if (buf.length < 8) throw corrupt('body shorter than its header');
  const keyField = buf.readUInt32BE(0);
  let pos = 4;
  let key: string | undefined;
  if (keyField > 0) {
    const end = pos + keyField - 1;
    if (end + 4 > buf.length) throw corrupt('key runs past the body');
    key = buf.toString('utf8', pos, end);
    pos = end;
  }
  const hdrLen = buf.readUInt32BE(pos);
  pos += 4;
  if (pos + hdrLen > buf.length) throw corrupt('headers run past the body');
  const headers = hdrLen === 0 ? { ...EMPTY_HEADERS } : (JSON.parse(buf.toString('utf8', pos, pos + hdrLen)) as Record<string, string>);
  // a view, not a copy: one push payload may feed many local subscribers
  return { key, headers, value: buf.subarray(pos + hdrLen) };
}

/** Splits `n` comma-terminated ASCII fields off the front of a payload. */
export function splitFields(buf: Buffer, n: number): { fields: string[]; rest: Buffer } {
  const fields: string[] = [];
  let pos = 0;
  for (let i = 0; i < n; i++) {
    const comma = buf.indexOf(0x2c, pos);
    if (comma < 0) throw corrupt('payload header is cut short');
    fields.push(buf.toString('latin1', pos, comma));
    pos = comma + 1;
  }
  return { fields, rest: buf.subarray(pos) };
}

export interface PushBatch {
  /** offset of the first message; the rest follow one by one. undefined: non-durable */
  firstOffset: number | undefined;
  timestamp: number;
  firstSeq: number;
  bodies: Body[];
}

export function decodePush(buf: Buffer): PushBatch {
  const { fields, rest } = splitFields(buf, 4);
  const count = Number(fields[3]);
  const bodies: Body[] = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const comma = rest.indexOf(0x2c, pos);
    if (comma < 0) throw corrupt('push payload is cut short');
    const len = Number(rest.toString('latin1', pos, comma));
    const end = comma + 1 + len;
    if (!Number.isInteger(len) || end > rest.length) throw corrupt('push payload length is wrong');
    bodies.push(decodeBody(rest.subarray(comma + 1, end)));
    pos = end;
  }
  return {
    firstOffset: fields[0] === '' ? undefined : Number(fields[0]),
    timestamp: Number(fields[1]),
    firstSeq: Number(fields[2]),
    bodies,
  };
}

export function encodeRequest(clientId: string, requestId: number, deadline: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${clientId},${requestId},${deadline},`, 'latin1'), value]);
}

export function decodeRequest(buf: Buffer): { clientId: string; requestId: string; deadline: number; value: Buffer } {
  const { fields, rest } = splitFields(buf, 3);
  return { clientId: fields[0], requestId: fields[1], deadline: Number(fields[2]), value: rest };
}

export function encodeReply(requestId: string, done: boolean, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${requestId},${done ? 'd' : 'c'},`, 'latin1'), value]);
}

export function decodeReply(buf: Buffer): { requestId: number; done: boolean; value: Buffer } {
  const { fields, rest } = splitFields(buf, 2);
  return { requestId: Number(fields[0]), done: fields[1] === 'd', value: rest };
}

function corrupt(what: string): LogBusError {
  return new LogBusError('CORRUPT', `a message read from Redis is damaged: ${what}`);
}
