/**
 * Framing of the logbus wire protocol.
 *
 *   u32 length   bytes that follow this field (version + type + requestId + body)
 *   u8  version  PROTOCOL_VERSION
 *   u8  type     FrameType
 *   u32 requestId  0 for unsolicited frames (DELIVER, RPC_INCOMING, PING, PONG)
 *   …   body
 *
 * All integers big-endian. The decoder is incremental (bytes may arrive split
 * anywhere) and never trusts a length: a frame above the limit, an unknown
 * version or type is a LogBusError('PROTOCOL') before anything is allocated.
 */
import { LogBusError } from '../errors.js';
import { LIMITS, MiB } from '../options.js';

/** 2: push deliveries carry their buffer charge, and DONE reports finished ones as a count and a sum of charges. */
export const PROTOCOL_VERSION = 2;
/** u32 length + u8 version + u8 type + u32 requestId */
export const HEADER_BYTES = 10;
/** Bytes counted by the length field besides the body. */
const LENGTH_COVERED_HEADER = HEADER_BYTES - 4;
/** Default ceiling for one frame a broker accepts from a client: 16 MiB of body plus room for the batch's own fields. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * MiB + 64 * 1024;
/**
 * Ceiling for one frame a client accepts from its broker: one message of the
 * largest size a topic may allow, plus a batch's worth of smaller ones. The
 * broker never builds a bigger frame (deliveries are flushed every 256 KiB,
 * read() answers are cut to fit).
 */
export const MAX_FRAME_FROM_BROKER = LIMITS.maxMessageBytes + 1 * MiB;
/**
 * Ceiling before authentication: HELLO is small, so an unauthenticated peer
 * cannot make the broker buffer big frames. A client sends nothing after
 * HELLO until HELLO_OK has come back.
 */
export const MAX_FRAME_BEFORE_HELLO = 64 * 1024;

/** c→b: client to broker, b→c: broker to client. Requests carry an id; the answer echoes it. */
export const FrameType = {
  HELLO: 1, // c→b first frame: token, client name → HELLO_OK or ERROR UNAUTHORIZED (then closed)
  HELLO_OK: 2, // b→c limits: heartbeat interval, max frame, max pending
  ERROR: 3, // b→c a request failed: code + message; request id 0 = the connection is refused
  OK: 4, // b→c a request without a result succeeded
  PING: 5, // both ways, answered by PONG
  PONG: 6,
  PRODUCE: 10, // c→b topic + batch of messages → PRODUCED (offsets) or ERROR
  PRODUCED: 11,
  SUBSCRIBE: 20, // c→b client-chosen subscription id, pattern, queue, buffer → OK
  UNSUBSCRIBE: 21,
  DONE: 22, // c→b subscription id, how many push deliveries finished and the sum of their charges (frees that much of its buffer); no answer
  CONSUME: 30, // c→b client-chosen consumer id + ConsumeSpec (JSON) → OK
  ACK: 31, // c→b batch of delivery ids; no answer
  NACK: 32, // c→b batch of (delivery id, error); no answer
  PAUSE: 33,
  CONSUMER_CLOSE: 34,
  DELIVER: 40, // b→c batch of deliveries for subscriptions and consumers (a push delivery carries its buffer charge)
  SERVE_RPC: 50, // c→b responder id + pattern → OK
  SERVE_CLOSE: 51,
  REQUEST: 52, // c→b pattern + value; answered by RPC_REPLY frames (last one done) or RPC_ERROR
  CANCEL: 53, // c→b stop a REQUEST (same id)
  RPC_INCOMING: 54, // b→c a request for one of this client's responders
  RPC_RESPOND: 55, // c→b a reply packet to an RPC_INCOMING
  RPC_REPLY: 56,
  RPC_ERROR: 57,
  READ: 60, // c→b topic, from, max → MESSAGES (cut to the frame limit)
  MESSAGES: 61,
  CREATE_TOPIC: 62, // admin calls: small, JSON-bodied answers
  TOPICS: 63,
  GROUPS: 64,
  RESET_GROUP: 65,
  STATS: 66,
  JSON_RESULT: 67,
} as const;
export type FrameTypeId = (typeof FrameType)[keyof typeof FrameType];

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));
const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

export interface Frame {
  type: FrameTypeId;
  requestId: number;
  /** May share memory with the received chunk: copy before keeping it beyond the frame's handling. */
  body: Buffer;
}

/** One frame as one buffer. `body` parts are copied once, here. */
export function encodeFrame(type: FrameTypeId, requestId: number, body?: Buffer | readonly Buffer[]): Buffer {
  const parts = body === undefined ? [] : Buffer.isBuffer(body) ? [body] : body;
  let bodyBytes = 0;
  for (const p of parts) bodyBytes += p.length;
  const out = Buffer.allocUnsafe(HEADER_BYTES + bodyBytes);
  out.writeUInt32BE(LENGTH_COVERED_HEADER + bodyBytes, 0);
  out[4] = PROTOCOL_VERSION;
  out[5] = type;
  out.writeUInt32BE(requestId >>> 0, 6);
  let at = HEADER_BYTES;
  for (const p of parts) {
    p.copy(out, at);
    at += p.length;
  }
  return out;
}

export function protocolError(message: string): LogBusError {
  return new LogBusError('PROTOCOL', message);
}

/**
 * Incremental frame decoder. push() returns the frames completed by a chunk;
 * it throws only LogBusError('PROTOCOL'), after which the decoder is unusable
 * (the connection must be closed). Memory held: one header (10 bytes) plus at
 * most one body of at most maxFrameBytes.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  private type = 0;
  private requestId = 0;
  /** Body being assembled across chunks (allocated once, exact size). */
  private body: Buffer | undefined;
  private bodyFill = 0;
  private failed: LogBusError | undefined;

  /** May be raised between pushes (the server does after authentication). */
  constructor(public maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  push(chunk: Buffer): Frame[] {
    if (this.failed) throw this.failed;
    const frames: Frame[] = [];
    let at = 0;
    const end = chunk.length;
    while (at < end) {
      if (this.body === undefined) {
        // Fast path: a whole header (and maybe the whole body) in this chunk.
        if (this.headerFill === 0 && end - at >= HEADER_BYTES) {
          const bodyLen = this.readHeader(chunk, at);
          at += HEADER_BYTES;
          if (end - at >= bodyLen) {
            frames.push({ type: this.type as FrameTypeId, requestId: this.requestId, body: chunk.subarray(at, at + bodyLen) });
            at += bodyLen;
          } else {
            this.startBody(bodyLen);
          }
          continue;
        }
        const n = Math.min(HEADER_BYTES - this.headerFill, end - at);
        chunk.copy(this.header, this.headerFill, at, at + n);
        this.headerFill += n;
        at += n;
        if (this.headerFill < HEADER_BYTES) break;
        this.headerFill = 0;
        const bodyLen = this.readHeader(this.header, 0);
        if (bodyLen === 0) frames.push({ type: this.type as FrameTypeId, requestId: this.requestId, body: Buffer.alloc(0) });
        else this.startBody(bodyLen);
        continue;
      }
      const body: Buffer = this.body;
      const n = Math.min(body.length - this.bodyFill, end - at);
      chunk.copy(body, this.bodyFill, at, at + n);
      this.bodyFill += n;
      at += n;
      if (this.bodyFill === body.length) {
        frames.push({ type: this.type as FrameTypeId, requestId: this.requestId, body });
        this.body = undefined;
        this.bodyFill = 0;
      }
    }
    return frames;
  }

  /** Bytes of an unfinished frame held right now (for tests of the memory bound). */
  get bufferedBytes(): number {
    return this.headerFill + (this.body?.length ?? 0);
  }

  private startBody(bodyLen: number): void {
    this.body = Buffer.allocUnsafe(bodyLen);
    this.bodyFill = 0;
  }

  /** Validates a header; returns the body length. */
  private readHeader(buf: Buffer, at: number): number {
    const length = buf.readUInt32BE(at);
    const version = buf[at + 4];
    const type = buf[at + 5];
    if (length < LENGTH_COVERED_HEADER) this.fail(`frame length ${length} is shorter than its header`);
    if (length > this.maxFrameBytes) this.fail(`frame length ${length} exceeds the limit of ${this.maxFrameBytes} bytes`);
    if (version !== PROTOCOL_VERSION) this.fail(`protocol version ${version} is not supported (expected ${PROTOCOL_VERSION})`);
    if (!KNOWN_TYPES.has(type)) this.fail(`unknown frame type ${type}`);
    this.type = type;
    this.requestId = buf.readUInt32BE(at + 6);
    return length - LENGTH_COVERED_HEADER;
  }

  private fail(message: string): never {
    this.failed = protocolError(message);
    throw this.failed;
  }
}
