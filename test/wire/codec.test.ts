import fc from 'fast-check';
import { isLogBusError } from '../../lib/errors.js';
import { dec, decodeBody, DeliverBatch, enc, TARGET_CONSUMER } from '../../lib/wire/codec.js';
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder, FrameType, type FrameTypeId, HEADER_BYTES, PROTOCOL_VERSION } from '../../lib/wire/frame.js';
import { checkDecoder, chunked, hostileStream, validFrame } from './frame-arbitraries.js';

const KNOWN_TYPES = Object.values(FrameType) as FrameTypeId[];

/** Strings the encoder takes both ways: short ASCII (stored char by char), non-ASCII and long ones (utf8 write). */
const text = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'grapheme-ascii', minLength: 60, maxLength: 80 }),
  fc.constantFrom('orders.created', 'commandes.créées', '注文.作成'),
);
/** Topics that repeat within a batch, some of the same length with other bytes (the decoder reuses a repeated topic's string). */
const topicText = fc.oneof(text, fc.constantFrom('a.b', 'a.c', 'ab', ''));

function decodeAll(chunks: Buffer[], limit = DEFAULT_MAX_FRAME_BYTES) {
  const d = new FrameDecoder(limit);
  return chunks.flatMap(c => d.push(c));
}

function expectProtocolError(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isLogBusError(caught, 'PROTOCOL')).toBe(true);
  expect((caught as Error).message).toMatch(message);
}

describe('frames', () => {
  test('any sequence of frames, split at any points, decodes to the same frames in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.constantFrom(...KNOWN_TYPES), requestId: fc.nat({ max: 0xffffffff }), body: fc.uint8Array({ maxLength: 300 }) }), {
          maxLength: 8,
        }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (frames, cuts) => {
          const bytes = Buffer.concat(frames.map(f => encodeFrame(f.type, f.requestId, Buffer.from(f.body))));
          const got = decodeAll(chunked(bytes, cuts));
          expect(got.map(f => ({ type: f.type, requestId: f.requestId, body: [...f.body] }))).toEqual(
            frames.map(f => ({ type: f.type, requestId: f.requestId, body: [...f.body] })),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a length prefix above the limit is refused from the header alone, before any body is buffered', () => {
    const d = new FrameDecoder(1024);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(0xffffffff, 0);
    header[4] = PROTOCOL_VERSION;
    header[5] = FrameType.PRODUCE;
    expectProtocolError(() => d.push(header), /exceeds the limit of 1024/);
    expect(d.bufferedBytes).toBe(0);
    // the decoder stays failed: a connection that broke the protocol is not read again
    expectProtocolError(() => d.push(encodeFrame(FrameType.PING, 0)), /exceeds the limit/);
  });

  test('unknown version, unknown type and a length shorter than the header are protocol errors', () => {
    const ping = encodeFrame(FrameType.PING, 0);
    const badVersion = Buffer.from(ping);
    badVersion[4] = 9;
    expectProtocolError(() => new FrameDecoder().push(badVersion), /version 9/);
    const badType = Buffer.from(ping);
    badType[5] = 200;
    expectProtocolError(() => new FrameDecoder().push(badType), /unknown frame type 200/);
    const short = Buffer.from(ping);
    short.writeUInt32BE(3, 0);
    expectProtocolError(() => new FrameDecoder().push(short), /shorter than its header/);
  });
});

describe('bodies', () => {
  test('PRODUCE carries a batch of messages with keys, headers and binary values unchanged', () => {
    const msg = fc.record({
      key: fc.option(text, { nil: undefined }),
      headers: fc.dictionary(text, text),
      value: fc.uint8Array({ maxLength: 200 }).map(a => Buffer.from(a)),
    });
    fc.assert(
      fc.property(text, fc.array(msg, { maxLength: 20 }), (topic, messages) => {
        const [frame] = decodeAll([enc.produce(7, topic, messages)]);
        expect(frame.type).toBe(FrameType.PRODUCE);
        expect(frame.requestId).toBe(7);
        const got = dec.produce(frame.body);
        expect(got.topic).toBe(topic);
        expect(got.messages.map(m => ({ key: m.key, headers: m.headers, value: [...m.value] }))).toEqual(
          // a message without headers decodes to none (undefined), not to an empty object per message
          messages.map(m => ({ key: m.key, headers: Object.keys(m.headers).length > 0 ? { ...m.headers } : undefined, value: [...m.value] })),
        );
      }),
      { numRuns: 200 },
    );
  });

  test('DELIVER carries a batch of deliveries, each with its target, id, count, charge, group and message', () => {
    const delivery = fc.record({
      targetId: fc.nat({ max: 0xffffffff }),
      id: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      deliveryCount: fc.integer({ min: 1, max: 1000 }),
      charge: fc.nat({ max: 0xffffffff }),
      group: fc.option(text, { nil: undefined }),
      topic: topicText,
      offset: fc.option(fc.nat({ max: Number.MAX_SAFE_INTEGER }), { nil: undefined }),
      timestamp: fc.nat({ max: 2 ** 45 }),
      key: fc.option(text, { nil: undefined }),
      headers: fc.dictionary(text, text),
      value: fc.uint8Array({ maxLength: 100 }).map(a => Buffer.from(a)),
    });
    fc.assert(
      fc.property(fc.array(delivery, { maxLength: 20 }), fc.nat(), (ds, epoch) => {
        const batch = new DeliverBatch();
        for (const d of ds) batch.add(TARGET_CONSUMER, d.targetId, d.id, d.deliveryCount, d.charge, d.group, d.topic, d);
        const [frame] = decodeAll([batch.frame()]);
        const got = dec.deliver(frame.body, epoch).map(d => ({ ...d, value: [...d.value] }));
        expect(got).toEqual(ds.map(d => ({ kind: TARGET_CONSUMER, ...d, headers: { ...d.headers }, value: [...d.value], epoch })));
      }),
      { numRuns: 200 },
    );
  });

  test('ACK frames carry batches of delivery ids; PRODUCED keeps undefined offsets of non-durable topics', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.array(fc.nat({ max: Number.MAX_SAFE_INTEGER }), { maxLength: 500 }), (target, ids) => {
        const [frame] = decodeAll([enc.ids(FrameType.ACK, target, ids)]);
        expect(dec.ids(frame.body, 'ACK')).toEqual({ targetId: target, ids });
      }),
      { numRuns: 100 },
    );
    // DONE: how many push deliveries of a subscription finished, and the sum of their charges
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.nat({ max: Number.MAX_SAFE_INTEGER }), (subId, count, bytes) => {
        const [frame] = decodeAll([enc.done(subId, count, bytes)]);
        expect(dec.done(frame.body)).toEqual({ subId, count, bytes });
      }),
      { numRuns: 100 },
    );
    expectProtocolError(() => dec.done(decodeAll([enc.done(1, 1, -1)])[0].body), /not a size/);
    expectProtocolError(() => dec.done(decodeAll([enc.done(1, 1, 0.5)])[0].body), /not an integer/);
    const [produced] = decodeAll([enc.produced(1, [0, undefined, 2 ** 40])]);
    expect(dec.produced(produced.body)).toEqual([0, undefined, 2 ** 40]);
  });

  test('a read() answer is cut to the frame budget, oldest first, but always carries at least one message', () => {
    const msgs = Array.from({ length: 10 }, (_, i) => ({ offset: i, timestamp: 1, key: undefined, headers: {}, value: Buffer.alloc(1000, i) }));
    const [all] = decodeAll([enc.messages(1, msgs)]);
    expect(dec.messages(all.body).map(m => m.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const [cut] = decodeAll([enc.messages(1, msgs, 3500)]);
    expect(cut.body.length + HEADER_BYTES).toBeLessThanOrEqual(3500);
    expect(dec.messages(cut.body).map(m => m.offset)).toEqual([0, 1, 2]);
    const [one] = decodeAll([enc.messages(1, msgs, 10)]);
    expect(dec.messages(one.body).map(m => [m.offset, m.value.length])).toEqual([[0, 1000]]);
  });

  test('a count larger than the bytes that follow is refused without looping over it', () => {
    const body = Buffer.alloc(8);
    body.writeUInt32BE(1, 0); // target
    body.writeUInt32BE(0xffffffff, 4); // 4 billion ids, no bytes for them
    expectProtocolError(() => dec.ids(body, 'ACK'), /count 4294967295 does not fit/);
  });

  test('trailing bytes after a body and bad JSON in control frames are protocol errors', () => {
    const [frame] = decodeAll([enc.str(FrameType.GROUPS, 1, 'orders')]);
    expectProtocolError(() => dec.str(Buffer.concat([frame.body, Buffer.from([0])]), 'GROUPS'), /unexpected bytes/);
    const body = Buffer.alloc(4 + 4 + 3);
    body.writeUInt32BE(1, 0);
    body.writeUInt32BE(3, 4);
    body.write('{x}', 8);
    expectProtocolError(() => dec.consume(body), /not valid JSON/);
  });
});

describe('decoder fuzzing', () => {
  test('every generated valid frame decodes, body included', () => {
    fc.assert(
      fc.property(fc.array(validFrame, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 6 }), (frames, cuts) => {
        const got = decodeAll(chunked(Buffer.concat(frames), cuts));
        expect(got).toHaveLength(frames.length);
        for (const f of got) expect(() => decodeBody(f.type, f.body)).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });

  test('arbitrary and mutated byte streams: frames or a PROTOCOL error, nothing else, within the frame limit', () => {
    fc.assert(
      fc.property(hostileStream, ({ chunks, limit }) => {
        expect(checkDecoder(chunks, limit)).toBeUndefined();
      }),
      { numRuns: 3000 },
    );
  });
});
