/**
 * Bodies of the wire frames: a bounds-checked reader and a growable writer,
 * and one encode/decode pair per frame type. Decoders throw only
 * LogBusError('PROTOCOL') (truncated or trailing bytes, bad UTF-8 lengths,
 * bad JSON) and never allocate more than the body they are given.
 *
 * Conventions: integers big-endian; numbers that may exceed 2^32 (offsets,
 * timestamps, delivery ids) as float64, with -1 for "none"; strings as
 * u32 byte length + UTF-8; optional strings as u8 flag + string.
 */
import { type Delivery, NO_HEADERS, type ReadMessage } from '../connection/types.js';
import { LogBusError, type LogBusErrorCode } from '../errors.js';
import { encodeFrame, FrameType, type FrameTypeId, HEADER_BYTES, PROTOCOL_VERSION, protocolError } from './frame.js';

// ───────────────────────────── writer / reader ─────────────────────────────

/** Strings up to this many chars are tried as ASCII first (Writer.str). */
const SHORT_STRING = 64;

/** Writes a frame in place: header room first, so the finished frame is one buffer, copied once. */
export class Writer {
  private buf: Buffer;
  private at = HEADER_BYTES;

  constructor(sizeHint = 256) {
    this.buf = Buffer.allocUnsafe(Math.max(HEADER_BYTES + sizeHint, 64));
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  get length(): number {
    return this.at - HEADER_BYTES;
  }

  /** Drops what was written after body length `length`. */
  truncate(length: number): void {
    this.at = HEADER_BYTES + length;
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.at++] = v;
    return this;
  }
  u32(v: number): this {
    this.room(4);
    // byte stores, not writeUInt32BE: this runs several times per message and its checks cost more than the store
    const b = this.buf;
    const at = this.at;
    b[at] = v >>> 24;
    b[at + 1] = v >>> 16;
    b[at + 2] = v >>> 8;
    b[at + 3] = v;
    this.at = at + 4;
    return this;
  }
  f64(v: number): this {
    this.room(8);
    this.buf.writeDoubleBE(v, this.at);
    this.at += 8;
    return this;
  }
  bytes(b: Buffer): this {
    this.u32(b.length);
    return this.raw(b);
  }
  raw(b: Buffer): this {
    this.room(b.length);
    this.buf.set(b, this.at); // TypedArray set: Buffer.copy's argument handling costs more than a small copy
    this.at += b.length;
    return this;
  }
  str(s: string): this {
    const len = s.length;
    if (len <= SHORT_STRING) {
      // topics, keys, header names: ASCII is one byte per char, stored here without two native calls
      this.room(4 + len);
      const b = this.buf;
      const start = this.at + 4;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[start + i] = c;
      }
      if (i === len) return this.u32(len).skip(len);
    }
    const max = Buffer.byteLength(s);
    this.room(4 + max);
    const n = this.buf.write(s, this.at + 4, 'utf8');
    return this.u32(n).skip(n);
  }
  /** Moves past bytes already stored after the current position. */
  private skip(n: number): this {
    this.at += n;
    return this;
  }
  optStr(s: string | undefined): this {
    if (s === undefined) return this.u8(0);
    return this.u8(1).str(s);
  }
  headers(h: Readonly<Record<string, string>> | undefined): this {
    if (h === undefined || h === NO_HEADERS) return this.u32(0);
    const keys = Object.keys(h);
    this.u32(keys.length);
    for (const k of keys) this.str(k).str(String(h![k]));
    return this;
  }

  /** The finished frame (header written in front of the body). */
  frame(type: FrameTypeId, requestId: number): Buffer {
    const bodyLen = this.at - HEADER_BYTES;
    const out = this.buf.subarray(0, this.at);
    out.writeUInt32BE(HEADER_BYTES - 4 + bodyLen, 0);
    out[4] = PROTOCOL_VERSION;
    out[5] = type;
    out.writeUInt32BE(requestId >>> 0, 6);
    return out;
  }
}

/** Where the last string a Reader decoded lies in its buffer (see strRepeated). */
interface LastString {
  at: number;
  n: number;
  s: string;
}

export class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number, what: string): void {
    if (this.buf.length - this.at < n) {
      throw protocolError(`truncated ${what}: needs ${n} bytes, ${this.buf.length - this.at} left`);
    }
  }
  get remaining(): number {
    return this.buf.length - this.at;
  }
  u8(what = 'u8'): number {
    this.need(1, what);
    return this.buf[this.at++];
  }
  u32(what = 'u32'): number {
    this.need(4, what);
    const b = this.buf;
    const at = this.at;
    this.at = at + 4;
    return b[at] * 0x1000000 + ((b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]);
  }
  f64(what = 'number'): number {
    this.need(8, what);
    const v = this.buf.readDoubleBE(this.at);
    this.at += 8;
    return v;
  }
  /** A number that must be an integer >= -1 (offsets, ids, counts with -1 for none). */
  int(what: string): number {
    const v = this.f64(what);
    if (!Number.isSafeInteger(v) || v < -1) throw protocolError(`${what} is ${v}, not an integer`);
    return v;
  }
  optInt(what: string): number | undefined {
    const v = this.int(what);
    return v === -1 ? undefined : v;
  }
  /** A byte string; shares memory with the frame body. */
  bytes(what = 'bytes'): Buffer {
    const n = this.u32(`${what} length`);
    this.need(n, what);
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  /** bytes() in memory of their own (not a view that keeps the whole frame, or socket chunk, alive). */
  bytesCopy(what = 'bytes'): Buffer {
    const n = this.u32(`${what} length`);
    this.need(n, what);
    const b = Buffer.allocUnsafe(n);
    this.buf.copy(b, 0, this.at, this.at + n);
    this.at += n;
    return b;
  }
  str(what = 'string'): string {
    const n = this.u32(`${what} length`);
    this.need(n, what);
    const s = this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }
  /** str(), but the last string again without decoding it when the bytes are the same (topics repeat within a DELIVER frame). */
  strRepeated(last: LastString, what: string): string {
    const n = this.u32(`${what} length`);
    this.need(n, what);
    const buf = this.buf;
    const at = this.at;
    this.at += n;
    if (n === last.n) {
      let i = 0;
      while (i < n && buf[at + i] === buf[last.at + i]) i++;
      if (i === n) return last.s;
    }
    last.at = at;
    last.n = n;
    last.s = buf.toString('utf8', at, at + n);
    return last.s;
  }
  optStr(what = 'string'): string | undefined {
    const flag = this.u8(`${what} flag`);
    if (flag === 0) return undefined;
    if (flag !== 1) throw protocolError(`bad flag ${flag} for ${what}`);
    return this.str(what);
  }
  bool(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw protocolError(`bad boolean ${v} for ${what}`);
    return v === 1;
  }
  /** A count of elements that each take at least `minBytes`: bounded by what is left, so no loop runs past the body. */
  count(what: string, minBytes: number): number {
    const n = this.u32(`${what} count`);
    if (n * minBytes > this.remaining) throw protocolError(`${what} count ${n} does not fit in the ${this.remaining} bytes left`);
    return n;
  }
  /** headers(), but NO_HEADERS (shared, frozen) when there are none: for deliveries, whose headers users get copied. */
  deliveryHeaders(): Readonly<Record<string, string>> {
    return this.noHeaders() ? NO_HEADERS : this.headers();
  }
  /** headers(), but undefined when there are none (a message published without headers). */
  optHeaders(): Record<string, string> | undefined {
    return this.noHeaders() ? undefined : this.headers();
  }
  /** Moves past a header count of 0 and says so; anything else is left for headers(). */
  private noHeaders(): boolean {
    if (this.remaining < 4 || this.buf.readUInt32BE(this.at) !== 0) return false;
    this.at += 4;
    return true;
  }
  headers(): Record<string, string> {
    const n = this.count('headers', 8);
    const h: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      const k = this.str('header name');
      const v = this.str('header value');
      // a header named __proto__ must stay a header, not replace the object's prototype
      if (k === '__proto__') Object.defineProperty(h, k, { value: v, enumerable: true, writable: true, configurable: true });
      else h[k] = v;
    }
    return h;
  }
  json<T>(what: string): T {
    const s = this.str(what);
    try {
      return JSON.parse(s) as T;
    } catch {
      throw protocolError(`${what} is not valid JSON`);
    }
  }
  end(what: string): void {
    if (this.at !== this.buf.length) throw protocolError(`${this.buf.length - this.at} unexpected bytes after ${what}`);
  }
}

// ───────────────────────────── frame bodies ─────────────────────────────

export interface HelloBody {
  token: string | undefined;
  client: string;
  /** The client's `topics` option as JSON: merged into the broker's config, as a second embedded client's would be. Optional trailing field. */
  topics?: string;
}
export interface HelloOkBody {
  broker: string;
  heartbeatMs: number;
  maxFrameBytes: number;
  maxPending: number;
}
export interface ErrorBody {
  code: LogBusErrorCode;
  message: string;
}
export interface ProduceBody {
  topic: string;
  messages: { key: string | undefined; headers: Record<string, string> | undefined; value: Buffer }[];
}
export interface SubscribeBody {
  subId: number;
  pattern: string;
  queue: string | undefined;
  bufferBytes: number | undefined;
}
export interface IdsBody {
  targetId: number;
  ids: number[];
}
export interface NackBody {
  targetId: number;
  items: { id: number; error: string }[];
}
export interface ConsumeBody {
  consumerId: number;
  /** A ConsumeSpec; validated by the broker. */
  spec: unknown;
}
export interface ServeRpcBody {
  serveId: number;
  pattern: string;
}
export interface RequestBody {
  pattern: string;
  value: Buffer;
}
export interface RpcIncomingBody {
  serveId: number;
  incomingId: number;
  pattern: string;
  value: Buffer;
}
export interface RpcRespondBody {
  incomingId: number;
  done: boolean;
  value: Buffer;
}
export interface RpcReplyBody {
  done: boolean;
  value: Buffer;
}
export interface ReadBody {
  topic: string;
  from: number | 'earliest';
  max: number;
}
export interface CreateTopicBody {
  name: string;
  config: unknown;
}
export interface ResetGroupBody {
  topic: string;
  group: string;
  to: unknown;
}

/** A delivery on the wire: which subscription (kind 0) or consumer (kind 1) it is for, plus the message. */
export const TARGET_SUBSCRIPTION = 0;
export const TARGET_CONSUMER = 1;
export interface DoneBody {
  subId: number;
  count: number;
  bytes: number;
}
export interface WireDeliveryBody {
  kind: typeof TARGET_SUBSCRIPTION | typeof TARGET_CONSUMER;
  targetId: number;
  id: number;
  topic: string;
  offset: number | undefined;
  timestamp: number;
  key: string | undefined;
  headers: Readonly<Record<string, string>>;
  value: Buffer;
  deliveryCount: number;
  /** Push: the bytes it holds of the subscriber's buffer, returned in DONE; the client sets -1 once it has reported it. */
  charge: number;
  group: string | undefined;
  /** The client's session it arrived in (given to deliver()), so an ack after a reconnect is ignored. */
  readonly epoch: number;
}

const BROKER_NAME = 'logbus/1';
export const brokerName = BROKER_NAME;

export const enc = {
  hello(requestId: number, b: HelloBody): Buffer {
    const w = new Writer(64).optStr(b.token).str(b.client);
    if (b.topics !== undefined) w.optStr(b.topics);
    return w.frame(FrameType.HELLO, requestId);
  },
  helloOk(requestId: number, b: HelloOkBody): Buffer {
    return new Writer(64).str(b.broker).u32(b.heartbeatMs).u32(b.maxFrameBytes).u32(b.maxPending).frame(FrameType.HELLO_OK, requestId);
  },
  error(requestId: number, code: string, message: string, type: FrameTypeId = FrameType.ERROR): Buffer {
    return new Writer(64 + message.length).str(code).str(message).frame(type, requestId);
  },
  errorFrom(requestId: number, err: unknown, type: FrameTypeId = FrameType.ERROR): Buffer {
    const { code, message } = errorBodyOf(err);
    return enc.error(requestId, code, message, type);
  },
  empty(type: FrameTypeId, requestId: number): Buffer {
    return encodeFrame(type, requestId);
  },
  produce(requestId: number, topic: string, messages: readonly { key?: string; headers?: Record<string, string>; value: Buffer }[]): Buffer {
    let size = 16 + topic.length;
    for (const m of messages) size += 16 + m.value.length + (m.key?.length ?? 0);
    const w = new Writer(size).str(topic).u32(messages.length);
    for (const m of messages) w.optStr(m.key).headers(m.headers).bytes(m.value);
    return w.frame(FrameType.PRODUCE, requestId);
  },
  produced(requestId: number, offsets: readonly (number | undefined)[]): Buffer {
    const w = new Writer(4 + offsets.length * 8).u32(offsets.length);
    for (const o of offsets) w.f64(o ?? -1);
    return w.frame(FrameType.PRODUCED, requestId);
  },
  subscribe(requestId: number, b: SubscribeBody): Buffer {
    return new Writer(64).u32(b.subId).str(b.pattern).optStr(b.queue).f64(b.bufferBytes ?? -1).frame(FrameType.SUBSCRIBE, requestId);
  },
  target(type: FrameTypeId, requestId: number, targetId: number): Buffer {
    return new Writer(4).u32(targetId).frame(type, requestId);
  },
  /** Push deliveries of one subscription whose handlers finished: how many, and the sum of their charges. */
  done(subId: number, count: number, bytes: number): Buffer {
    return new Writer(16).u32(subId).u32(count).f64(bytes).frame(FrameType.DONE, 0);
  },
  ids(type: typeof FrameType.ACK, targetId: number, ids: readonly number[]): Buffer {
    const w = new Writer(8 + ids.length * 8).u32(targetId).u32(ids.length);
    for (const id of ids) w.f64(id);
    return w.frame(type, 0);
  },
  nack(targetId: number, items: readonly { id: number; error: string }[]): Buffer {
    const w = new Writer(64 * items.length).u32(targetId).u32(items.length);
    for (const it of items) w.f64(it.id).str(it.error);
    return w.frame(FrameType.NACK, 0);
  },
  consume(requestId: number, consumerId: number, spec: unknown): Buffer {
    return new Writer(256).u32(consumerId).str(JSON.stringify(spec)).frame(FrameType.CONSUME, requestId);
  },
  serveRpc(requestId: number, serveId: number, pattern: string): Buffer {
    return new Writer(64).u32(serveId).str(pattern).frame(FrameType.SERVE_RPC, requestId);
  },
  request(requestId: number, pattern: string, value: Buffer): Buffer {
    return new Writer(16 + pattern.length + value.length).str(pattern).bytes(value).frame(FrameType.REQUEST, requestId);
  },
  rpcIncoming(b: RpcIncomingBody): Buffer {
    return new Writer(32 + b.pattern.length + b.value.length)
      .u32(b.serveId)
      .f64(b.incomingId)
      .str(b.pattern)
      .bytes(b.value)
      .frame(FrameType.RPC_INCOMING, 0);
  },
  rpcRespond(b: RpcRespondBody): Buffer {
    return new Writer(16 + b.value.length).f64(b.incomingId).u8(b.done ? 1 : 0).bytes(b.value).frame(FrameType.RPC_RESPOND, 0);
  },
  rpcReply(requestId: number, done: boolean, value: Buffer): Buffer {
    return new Writer(8 + value.length).u8(done ? 1 : 0).bytes(value).frame(FrameType.RPC_REPLY, requestId);
  },
  read(requestId: number, b: ReadBody): Buffer {
    return new Writer(32 + b.topic.length)
      .str(b.topic)
      .f64(b.from === 'earliest' ? -1 : b.from)
      .u32(b.max)
      .frame(FrameType.READ, requestId);
  },
  /** As many of `msgs` (oldest first, at least one) as fit in `maxBytes`: read() may return fewer than asked. */
  messages(requestId: number, msgs: readonly ReadMessage[], maxBytes = Infinity): Buffer {
    const w = new Writer(1024).u32(0);
    let n = 0;
    for (const m of msgs) {
      const before = w.length;
      w.f64(m.offset).f64(m.timestamp).optStr(m.key).headers(m.headers).bytes(m.value);
      if (n > 0 && w.length + HEADER_BYTES > maxBytes) {
        w.truncate(before);
        break;
      }
      n++;
    }
    const f = w.frame(FrameType.MESSAGES, requestId);
    f.writeUInt32BE(n, HEADER_BYTES);
    return f;
  },
  createTopic(requestId: number, name: string, config: unknown): Buffer {
    return new Writer(128).str(name).str(JSON.stringify(config ?? {})).frame(FrameType.CREATE_TOPIC, requestId);
  },
  str(type: FrameTypeId, requestId: number, s: string): Buffer {
    return new Writer(8 + s.length).str(s).frame(type, requestId);
  },
  resetGroup(requestId: number, b: ResetGroupBody): Buffer {
    return new Writer(128).str(b.topic).str(b.group).str(JSON.stringify(b.to)).frame(FrameType.RESET_GROUP, requestId);
  },
  json(requestId: number, value: unknown): Buffer {
    return enc.str(FrameType.JSON_RESULT, requestId, JSON.stringify(value));
  },
};

/** The message of a delivery: what follows the delivery's own fields in a DELIVER entry. */
export type DeliveredMessage = Pick<Delivery, 'offset' | 'timestamp' | 'key' | 'headers' | 'value'>;

/** Builds one DELIVER frame carrying a batch of deliveries. */
export class DeliverBatch {
  private readonly w: Writer;
  private n = 0;

  /** `sizeHint`: the bytes expected (the last batch's size), so a burst is not copied on every doubling. */
  constructor(sizeHint = 1024) {
    this.w = new Writer(sizeHint);
    this.w.u32(0); // count, patched in frame()
  }
  get count(): number {
    return this.n;
  }
  get bytes(): number {
    return this.w.length;
  }
  /**
   * `charge`: what a push delivery holds of its subscriber's buffer until DONE
   * reports it (0 for a consumer's). The message is encoded straight into this
   * batch for each subscriber: encoding it once into a buffer of its own and
   * copying that cost two Buffer objects per message, more than the encoding.
   */
  add(kind: number, targetId: number, id: number, deliveryCount: number, charge: number, group: string | undefined, topic: string, m: DeliveredMessage): void {
    this.w.u8(kind).u32(targetId).f64(id).u32(deliveryCount).u32(charge).optStr(group);
    this.w.str(topic).f64(m.offset ?? -1).f64(m.timestamp).optStr(m.key).headers(m.headers).bytes(m.value);
    this.n++;
  }
  frame(): Buffer {
    const f = this.w.frame(FrameType.DELIVER, 0);
    f.writeUInt32BE(this.n, HEADER_BYTES);
    return f;
  }
}

function targetKind(v: number): typeof TARGET_SUBSCRIPTION | typeof TARGET_CONSUMER {
  if (v !== TARGET_SUBSCRIPTION && v !== TARGET_CONSUMER) throw protocolError(`bad delivery target kind ${v}`);
  return v;
}

const CODES: ReadonlySet<string> = new Set([
  'INVALID_TOPIC', 'MESSAGE_TOO_LARGE', 'NO_RESPONDERS', 'TIMEOUT', 'UNAUTHORIZED', 'NOT_DURABLE', 'CLOSED', 'LOCKED',
  'CONNECTION_LOST', 'STORAGE', 'INVALID_OPTION', 'INVALID_ARGUMENT', 'CORRUPT', 'PROTOCOL',
]);

export function errorBodyOf(err: unknown): ErrorBody {
  if (err instanceof LogBusError) {
    // LogBusError prefixes its message with the code; send the bare text so the peer does not double it.
    const prefix = `${err.code}: `;
    return { code: err.code, message: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message };
  }
  return { code: 'STORAGE', message: err instanceof Error ? err.message : String(err) };
}

export const dec = {
  hello(body: Buffer): HelloBody {
    const r = new Reader(body);
    const b: HelloBody = { token: r.optStr('token'), client: r.str('client name') };
    if (r.remaining > 0) b.topics = r.optStr('topics');
    r.end('HELLO');
    return b;
  },
  helloOk(body: Buffer): HelloOkBody {
    const r = new Reader(body);
    const b = { broker: r.str('broker'), heartbeatMs: r.u32(), maxFrameBytes: r.u32(), maxPending: r.u32() };
    r.end('HELLO_OK');
    return b;
  },
  error(body: Buffer): ErrorBody {
    const r = new Reader(body);
    const code = r.str('error code');
    const message = r.str('error message');
    r.end('ERROR');
    if (!CODES.has(code)) throw protocolError(`unknown error code ${JSON.stringify(code.slice(0, 40))}`);
    return { code: code as LogBusErrorCode, message };
  },
  empty(body: Buffer, what: string): void {
    new Reader(body).end(what);
  },
  /** ownValues: each value in memory of its own, for a broker that keeps them. */
  produce(body: Buffer, ownValues = false): ProduceBody {
    const r = new Reader(body);
    const topic = r.str('topic');
    const n = r.count('messages', 9);
    const messages: ProduceBody['messages'] = [];
    for (let i = 0; i < n; i++) {
      messages.push({ key: r.optStr('key'), headers: r.optHeaders(), value: ownValues ? r.bytesCopy('value') : r.bytes('value') });
    }
    r.end('PRODUCE');
    return { topic, messages };
  },
  produced(body: Buffer): (number | undefined)[] {
    const r = new Reader(body);
    const n = r.count('offsets', 8);
    const out: (number | undefined)[] = [];
    for (let i = 0; i < n; i++) out.push(r.optInt('offset'));
    r.end('PRODUCED');
    return out;
  },
  subscribe(body: Buffer): SubscribeBody {
    const r = new Reader(body);
    const b = { subId: r.u32('subscription id'), pattern: r.str('pattern'), queue: r.optStr('queue'), bufferBytes: r.optInt('bufferBytes') };
    r.end('SUBSCRIBE');
    return b;
  },
  target(body: Buffer, what: string): number {
    const r = new Reader(body);
    const id = r.u32(`${what} id`);
    r.end(what);
    return id;
  },
  done(body: Buffer): DoneBody {
    const r = new Reader(body);
    const b = { subId: r.u32('subscription id'), count: r.u32('count'), bytes: r.int('bytes') };
    r.end('DONE');
    if (b.bytes < 0) throw protocolError('DONE bytes is -1, not a size');
    return b;
  },
  ids(body: Buffer, what: string): IdsBody {
    const r = new Reader(body);
    const targetId = r.u32('target id');
    const n = r.count('ids', 8);
    const ids: number[] = [];
    for (let i = 0; i < n; i++) ids.push(r.int('delivery id'));
    r.end(what);
    return { targetId, ids };
  },
  nack(body: Buffer): NackBody {
    const r = new Reader(body);
    const targetId = r.u32('consumer id');
    const n = r.count('nacks', 12);
    const items: NackBody['items'] = [];
    for (let i = 0; i < n; i++) items.push({ id: r.int('delivery id'), error: r.str('error') });
    r.end('NACK');
    return { targetId, items };
  },
  consume(body: Buffer): ConsumeBody {
    const r = new Reader(body);
    const b = { consumerId: r.u32('consumer id'), spec: r.json<unknown>('consume spec') };
    r.end('CONSUME');
    return b;
  },
  serveRpc(body: Buffer): ServeRpcBody {
    const r = new Reader(body);
    const b = { serveId: r.u32('responder id'), pattern: r.str('pattern') };
    r.end('SERVE_RPC');
    return b;
  },
  request(body: Buffer): RequestBody {
    const r = new Reader(body);
    const b = { pattern: r.str('pattern'), value: r.bytes('value') };
    r.end('REQUEST');
    return b;
  },
  rpcIncoming(body: Buffer): RpcIncomingBody {
    const r = new Reader(body);
    const b = { serveId: r.u32('responder id'), incomingId: r.int('incoming id'), pattern: r.str('pattern'), value: r.bytes('value') };
    r.end('RPC_INCOMING');
    return b;
  },
  rpcRespond(body: Buffer): RpcRespondBody {
    const r = new Reader(body);
    const b = { incomingId: r.int('incoming id'), done: r.bool('done'), value: r.bytes('value') };
    r.end('RPC_RESPOND');
    return b;
  },
  rpcReply(body: Buffer): RpcReplyBody {
    const r = new Reader(body);
    const b = { done: r.bool('done'), value: r.bytes('value') };
    r.end('RPC_REPLY');
    return b;
  },
  read(body: Buffer): ReadBody {
    const r = new Reader(body);
    const topic = r.str('topic');
    const from = r.int('from');
    const max = r.u32('max');
    r.end('READ');
    return { topic, from: from === -1 ? 'earliest' : from, max };
  },
  messages(body: Buffer): ReadMessage[] {
    const r = new Reader(body);
    const n = r.count('messages', 25);
    const out: ReadMessage[] = [];
    for (let i = 0; i < n; i++) {
      out.push({ offset: r.int('offset'), timestamp: r.f64('timestamp'), key: r.optStr('key'), headers: r.headers(), value: r.bytes('value') });
    }
    r.end('MESSAGES');
    return out;
  },
  createTopic(body: Buffer): CreateTopicBody {
    const r = new Reader(body);
    const b = { name: r.str('topic'), config: r.json<unknown>('topic config') };
    r.end('CREATE_TOPIC');
    return b;
  },
  str(body: Buffer, what: string): string {
    const r = new Reader(body);
    const s = r.str(what);
    r.end(what);
    return s;
  },
  resetGroup(body: Buffer): ResetGroupBody {
    const r = new Reader(body);
    const b = { topic: r.str('topic'), group: r.str('group'), to: r.json<unknown>('reset position') };
    r.end('RESET_GROUP');
    return b;
  },
  json<T>(body: Buffer): T {
    const r = new Reader(body);
    const v = r.json<T>('result');
    r.end('JSON_RESULT');
    return v;
  },
  /** Each delivery is one object, used as is by the client (no copy per message). */
  deliver(body: Buffer, epoch = 0): WireDeliveryBody[] {
    const r = new Reader(body);
    const n = r.count('deliveries', 51);
    const out: WireDeliveryBody[] = [];
    const lastTopic: LastString = { at: 0, n: -1, s: '' };
    for (let i = 0; i < n; i++) {
      const kind = targetKind(r.u8('target kind'));
      const targetId = r.u32('target id');
      const id = r.int('delivery id');
      const deliveryCount = r.u32('delivery count');
      const charge = r.u32('charge');
      const group = r.optStr('group');
      const topic = r.strRepeated(lastTopic, 'topic');
      const offset = r.optInt('offset');
      const timestamp = r.f64('timestamp');
      const key = r.optStr('key');
      const headers = r.deliveryHeaders();
      const value = r.bytes('value');
      out.push({ kind, targetId, id, topic, offset, timestamp, key, headers, value, deliveryCount, charge, group, epoch });
    }
    r.end('DELIVER');
    return out;
  },
};

/** Decodes any frame's body by type: used by the fuzzer to reach every decoder. */
export function decodeBody(type: FrameTypeId, body: Buffer): unknown {
  switch (type) {
    case FrameType.HELLO: return dec.hello(body);
    case FrameType.HELLO_OK: return dec.helloOk(body);
    case FrameType.ERROR:
    case FrameType.RPC_ERROR: return dec.error(body);
    case FrameType.OK:
    case FrameType.PING:
    case FrameType.PONG:
    case FrameType.CANCEL:
    case FrameType.TOPICS:
    case FrameType.STATS: return dec.empty(body, 'frame');
    case FrameType.PRODUCE: return dec.produce(body);
    case FrameType.PRODUCED: return dec.produced(body);
    case FrameType.SUBSCRIBE: return dec.subscribe(body);
    case FrameType.UNSUBSCRIBE:
    case FrameType.PAUSE:
    case FrameType.CONSUMER_CLOSE:
    case FrameType.SERVE_CLOSE: return dec.target(body, 'target');
    case FrameType.DONE: return dec.done(body);
    case FrameType.ACK: return dec.ids(body, 'ids');
    case FrameType.NACK: return dec.nack(body);
    case FrameType.CONSUME: return dec.consume(body);
    case FrameType.DELIVER: return dec.deliver(body);
    case FrameType.SERVE_RPC: return dec.serveRpc(body);
    case FrameType.REQUEST: return dec.request(body);
    case FrameType.RPC_INCOMING: return dec.rpcIncoming(body);
    case FrameType.RPC_RESPOND: return dec.rpcRespond(body);
    case FrameType.RPC_REPLY: return dec.rpcReply(body);
    case FrameType.READ: return dec.read(body);
    case FrameType.MESSAGES: return dec.messages(body);
    case FrameType.CREATE_TOPIC: return dec.createTopic(body);
    case FrameType.GROUPS: return dec.str(body, 'GROUPS');
    case FrameType.RESET_GROUP: return dec.resetGroup(body);
    case FrameType.JSON_RESULT: return dec.json(body);
    default: throw protocolError(`unknown frame type ${type as number}`);
  }
}

export function errorFromBody(b: ErrorBody): LogBusError {
  return new LogBusError(b.code, b.message);
}
