/**
 * fast-check generators of valid frames and of hostile byte streams, and the
 * decoder property they must satisfy. Shared by the test suite and by
 * bench/fuzz-frames.ts (a million cases).
 */
import fc from 'fast-check';
import { isLogBusError } from '../../lib/errors.js';
import { decodeBody, DeliverBatch, enc, TARGET_CONSUMER, TARGET_SUBSCRIPTION } from '../../lib/wire/codec.js';
import { FrameDecoder, FrameType, type FrameTypeId, HEADER_BYTES } from '../../lib/wire/frame.js';

const str = fc.string({ maxLength: 24 });
const optStr = fc.option(str, { nil: undefined });
const headers = fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 12 }), { maxKeys: 3 });
const value = fc.uint8Array({ maxLength: 64 }).map(a => Buffer.from(a));
const offset = fc.option(fc.nat({ max: 2 ** 40 }), { nil: undefined });
const id = fc.nat({ max: 0xffffffff });
const bigId = fc.nat({ max: Number.MAX_SAFE_INTEGER });

/** One valid encoded frame of any type. */
export const validFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc.record({ token: optStr, client: str }).map(b => enc.hello(1, b)),
  fc.record({ broker: str, heartbeatMs: id, maxFrameBytes: id, maxPending: id }).map(b => enc.helloOk(2, b)),
  fc.record({ code: fc.constantFrom('TIMEOUT', 'INVALID_TOPIC', 'UNAUTHORIZED'), message: str }).map(b => enc.error(3, b.code, b.message)),
  fc.constantFrom(FrameType.OK, FrameType.PING, FrameType.PONG, FrameType.TOPICS, FrameType.STATS).map(t => enc.empty(t, 4)),
  fc
    .record({ topic: str, messages: fc.array(fc.record({ key: optStr, headers, value }), { maxLength: 4 }) })
    .map(b => enc.produce(5, b.topic, b.messages)),
  fc.array(offset, { maxLength: 6 }).map(o => enc.produced(6, o)),
  fc.record({ subId: id, pattern: str, queue: optStr, bufferBytes: fc.option(fc.nat(), { nil: undefined }) }).map(b => enc.subscribe(7, b)),
  fc.tuple(id, fc.array(bigId, { maxLength: 6 })).map(([target, ids]) => enc.ids(FrameType.ACK, target, ids)),
  fc.tuple(id, id, bigId).map(([sub, count, bytes]) => enc.done(sub, count, bytes)),
  fc.tuple(id, fc.array(fc.record({ id: bigId, error: str }), { maxLength: 3 })).map(([t, items]) => enc.nack(t, items)),
  fc.tuple(id, fc.jsonValue({ maxDepth: 2 })).map(([c, spec]) => enc.consume(8, c, spec)),
  fc.tuple(id, str).map(([s, p]) => enc.serveRpc(9, s, p)),
  fc.tuple(str, value).map(([p, v]) => enc.request(10, p, v)),
  fc.record({ serveId: id, incomingId: bigId, pattern: str, value }).map(b => enc.rpcIncoming(b)),
  fc.record({ incomingId: bigId, done: fc.boolean(), value }).map(b => enc.rpcRespond(b)),
  fc.tuple(fc.boolean(), value).map(([d, v]) => enc.rpcReply(11, d, v)),
  fc.record({ topic: str, from: fc.oneof(fc.constant('earliest' as const), fc.nat()), max: id }).map(b => enc.read(12, b)),
  fc
    .array(fc.record({ offset: fc.nat(), timestamp: fc.nat(), key: optStr, headers, value }), { maxLength: 4 })
    .map(m => enc.messages(13, m)),
  fc.tuple(str, fc.jsonValue({ maxDepth: 2 })).map(([n, c]) => enc.createTopic(14, n, c)),
  str.map(t => enc.str(FrameType.GROUPS, 15, t)),
  fc.tuple(str, str, fc.jsonValue({ maxDepth: 1 })).map(([topic, group, to]) => enc.resetGroup(16, { topic, group, to })),
  fc.jsonValue({ maxDepth: 2 }).map(v => enc.json(17, v)),
  fc
    .array(
      fc.record({
        kind: fc.constantFrom(TARGET_SUBSCRIPTION, TARGET_CONSUMER),
        target: id,
        id: bigId,
        count: fc.nat({ max: 100 }),
        charge: id,
        group: optStr,
        topic: str,
        offset,
        timestamp: fc.nat(),
        key: optStr,
        headers,
        value,
      }),
      { maxLength: 4 },
    )
    .map(ds => {
      const b = new DeliverBatch();
      for (const d of ds) b.add(d.kind, d.target, d.id, d.count, d.charge, d.group, d.topic, d);
      return b.frame();
    }),
);

/** Splits a byte stream into chunks at arbitrary points. */
export function chunked(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map(c => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
}

type Mutation = { kind: 'flip'; at: number; xor: number } | { kind: 'cut'; at: number } | { kind: 'insert'; at: number; bytes: Uint8Array } | { kind: 'set32'; at: number; v: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('set32' as const), at: fc.nat(), v: fc.nat({ max: 0xffffffff }) }),
);

export function mutate(bytes: Buffer, ms: Mutation[]): Buffer {
  let b = Buffer.from(bytes);
  for (const m of ms) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at] ^= m.xor;
    else if (m.kind === 'cut') b = b.subarray(0, at);
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
    else if (b.length >= at + 4) b.writeUInt32BE(m.v, at);
  }
  return b;
}

/** A stream: valid frames, then mutated, split into chunks; or plain random bytes. */
export const hostileStream: fc.Arbitrary<{ chunks: Buffer[]; limit: number }> = fc.oneof(
  fc
    .record({
      frames: fc.array(validFrame, { minLength: 1, maxLength: 4 }),
      mutations: fc.array(mutation, { maxLength: 3 }),
      cuts: fc.array(fc.nat(), { maxLength: 5 }),
      limit: fc.integer({ min: HEADER_BYTES, max: 4096 }),
    })
    .map(r => ({ chunks: chunked(mutate(Buffer.concat(r.frames), r.mutations), r.cuts), limit: r.limit })),
  fc
    .record({ bytes: fc.uint8Array({ maxLength: 256 }), cuts: fc.array(fc.nat(), { maxLength: 4 }), limit: fc.integer({ min: 0, max: 1 << 20 }) })
    .map(r => ({ chunks: chunked(Buffer.from(r.bytes), r.cuts), limit: r.limit })),
);

/**
 * The decoder's contract on any input: it returns frames or throws
 * LogBusError('PROTOCOL'), holds at most `limit` bytes of an unfinished
 * frame, and every returned body decodes or throws PROTOCOL. Returns a
 * description of the violation, or undefined.
 */
export function checkDecoder(chunks: Buffer[], limit: number): string | undefined {
  const d = new FrameDecoder(limit);
  for (const c of chunks) {
    let frames;
    try {
      frames = d.push(c);
    } catch (e) {
      return isLogBusError(e, 'PROTOCOL') ? undefined : `decoder threw ${String(e)}`;
    }
    if (d.bufferedBytes > limit + HEADER_BYTES) return `decoder holds ${d.bufferedBytes} bytes, limit ${limit}`;
    for (const f of frames) {
      if (f.body.length + HEADER_BYTES - 4 > limit) return `frame of ${f.body.length} bytes passed a limit of ${limit}`;
      try {
        decodeBody(f.type as FrameTypeId, f.body);
      } catch (e) {
        if (!isLogBusError(e, 'PROTOCOL')) return `body decoder for type ${f.type} threw ${String(e)}`;
      }
    }
  }
  return undefined;
}
