import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { lastValueFrom } from 'rxjs';
import type { Deserializer, Serializer } from '@nestjs/microservices';
import { LogBusClient } from '../../lib/index.js';
import { codeOf, sleep, tempDir, uniqueTopic } from './helpers.js';

const dataDir = ':memory:';
let client: LogBusClient;

beforeAll(() => {
  client = new LogBusClient({ dataDir, topics: { 'small.*': { maxMessageBytes: 1024 } } });
});
afterAll(async () => {
  await client.close();
});

describe('LogBusClient', () => {
  it('connect() is idempotent: concurrent calls share one connection', async () => {
    const c = new LogBusClient({ dataDir });
    const [a, b] = await Promise.all([c.connect(), c.connect()]);
    expect(a).toBe(b);
    expect(await c.connect()).toBe(a);
    await c.close();
  });

  it('produce returns gap-free offsets from 0; read returns them oldest first with data, key, headers, timestamp', async () => {
    const topic = uniqueTopic('log');
    const before = Date.now();
    const r0 = await client.produce(topic, { a: 1 }, { key: 'k', headers: { h: '1' } });
    const r1 = await client.produce(topic, 'text');
    const r2 = await lastValueFrom(client.emit(topic, [1, 2]));
    expect([r0, r1, r2]).toEqual([
      { topic, offset: 0 },
      { topic, offset: 1 },
      { topic, offset: 2 },
    ]);
    const all = await client.read(topic);
    expect(all.map(m => ({ offset: m.offset, key: m.key, headers: m.headers, data: m.data }))).toEqual([
      { offset: 0, key: 'k', headers: { h: '1' }, data: { a: 1 } },
      { offset: 1, key: undefined, headers: {}, data: 'text' },
      { offset: 2, key: undefined, headers: {}, data: [1, 2] },
    ]);
    expect(all[0].timestamp).toBeGreaterThanOrEqual(before - 1000);
    expect((await client.read(topic, { from: 1, max: 1 })).map(m => m.data)).toEqual(['text']);
  });

  it('produceBatch is one call, in order, accepted whole or rejected whole', async () => {
    const topic = uniqueTopic('small.batch');
    const ok = await client.produceBatch(topic, [{ data: 1 }, { data: 2, key: 'x' }, { data: 3 }]);
    expect(ok).toEqual([0, 1, 2].map(offset => ({ topic, offset })));
    const tooBig = 'x'.repeat(2000);
    expect(await codeOf(client.produceBatch<unknown>(topic, [{ data: 4 }, { data: tooBig }]))).toBe('MESSAGE_TOO_LARGE');
    expect((await client.read(topic)).map(m => m.data)).toEqual([1, 2, 3]);
    expect(await client.produceBatch(topic, [])).toEqual([]);
  });

  it('rejects bad topics with INVALID_TOPIC and oversized messages with MESSAGE_TOO_LARGE, storing nothing', async () => {
    for (const bad of ['orders.*', 'orders.>', 'a..b', '', 'a b', 'x'.repeat(250)]) {
      expect(await codeOf(client.produce(bad, {}))).toBe('INVALID_TOPIC');
      expect(await codeOf(lastValueFrom(client.emit(bad, {})))).toBe('INVALID_TOPIC');
    }
    const topic = uniqueTopic('small.limit');
    expect(await codeOf(client.produce(topic, 'y'.repeat(2000)))).toBe('MESSAGE_TOO_LARGE');
    await client.produce(topic, 'fits');
    expect((await client.read(topic)).map(m => m.data)).toEqual(['fits']);
  });

  it('rejects bad arguments with a code', async () => {
    const topic = uniqueTopic('args');
    expect(await codeOf(client.produce(topic, 1, { key: 5 as unknown as string }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(client.produce(topic, 1, { headers: { a: 1 as unknown as string } }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(client.read(topic, { max: 0 }))).toBe('INVALID_OPTION');
    expect(await codeOf(client.read(topic, { from: -1 }))).toBe('INVALID_OPTION');
    expect(await codeOf(client.resetGroup(topic, 'g', 'middle' as never))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(client.createTopic(topic, { segmentBytes: 1 }))).toBe('INVALID_OPTION');
  });

  it('createTopic configures a topic before use; topics() reports it', async () => {
    const durable = uniqueTopic('made');
    const live = uniqueTopic('made-live');
    await client.createTopic(durable, { retention: { maxAgeMs: '1d' } });
    await client.createTopic(durable, { retention: { maxAgeMs: '1d' } });
    await client.createTopic(live, { durable: false });
    const info = await client.topics();
    expect(info.find(t => t.name === durable)).toMatchObject({ durable: true, earliestOffset: 0, nextOffset: 0 });
    expect(info.find(t => t.name === live)).toMatchObject({ durable: false });
    expect((await client.produce(live, 1)).offset).toBeUndefined();
  });

  it('stats() counts what was published', async () => {
    const before = (await client.stats()).published;
    await client.produce(uniqueTopic('stats'), 1);
    const after = await client.stats();
    expect(after.published).toBe(before + 1);
    expect(after).toEqual(expect.objectContaining({ delivered: expect.any(Number), redelivered: expect.any(Number), deadLettered: expect.any(Number), dropped: expect.any(Object) }));
  });

  it('carries Nest 12 packet metadata (setOnDispatchHook) as message headers', async () => {
    const c = new LogBusClient({ dataDir });
    c.setOnDispatchHook(packet => {
      packet.metadata = { 'trace-id': 'abc' };
    });
    const topic = uniqueTopic('meta');
    await lastValueFrom(c.emit(topic, { x: 1 }));
    expect((await client.read(topic))[0].headers).toEqual({ 'trace-id': 'abc' });
    await c.close();
  });

  it('uses a user serializer and deserializer (Nest interfaces) for payload bytes', async () => {
    const serializer: Serializer = { serialize: (v: unknown) => Buffer.from(`<${String(v)}>`) };
    const deserializer: Deserializer = { deserialize: (b: Buffer) => b.toString().slice(1, -1).toUpperCase() };
    const c = new LogBusClient({ dataDir, serializer, deserializer });
    const topic = uniqueTopic('codec');
    await c.produce(topic, 'hello');
    expect((await c.read(topic))[0].data).toBe('HELLO');
    // a default client sees the raw bytes, not JSON
    expect((await client.read(topic))[0].data).toBe('<hello>');
    await c.close();
  });

  it('calls after close() fail with CLOSED', async () => {
    const c = new LogBusClient({ dataDir });
    await c.produce(uniqueTopic('closing'), 1);
    await c.close();
    await c.close();
    expect(await codeOf(c.produce(uniqueTopic('closing'), 1))).toBe('CLOSED');
    expect(await codeOf(c.connect())).toBe('CLOSED');
    expect(await codeOf(lastValueFrom(c.emit('x', 1)))).toBe('CLOSED');
    expect(await codeOf(lastValueFrom(c.send('x', 1)))).toBe('CLOSED');
    expect(await codeOf(c.topics())).toBe('CLOSED');
  });

  it('close() flushes what was accepted: publishes in flight complete before it disconnects', async () => {
    await client.connect(); // keeps the shared ':memory:' broker open after c closes
    const c = new LogBusClient({ dataDir });
    const topic = uniqueTopic('flush');
    const sent = Array.from({ length: 100 }, (_, n) => c.produce(topic, { n }));
    await c.close();
    const results = await Promise.all(sent);
    expect(results.map(r => r.offset)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect((await client.read(topic, { max: 1000 })).length).toBe(100);
  });

  it('rejects bad options at connect with INVALID_OPTION', async () => {
    const c = new LogBusClient({ fsync: 'sometimes' as never, dataDir });
    expect(await codeOf(c.connect())).toBe('INVALID_OPTION');
    await c.close();
  });

  // its own dataDir: the broker's retention timer is set by whoever opens it first
  it('retention deletes old segments, visible through topics()', async () => {
    const dir = await tempDir('retention');
    const topic = uniqueTopic('retained');
    const c = new LogBusClient({
      dataDir: dir.path,
      fsync: 'never',
      retentionCheckMs: 50,
      topics: { [topic]: { segmentBytes: 4096, retention: { maxBytes: 8192 } } },
    });
    try {
      const body = 'z'.repeat(500);
      for (let i = 0; i < 10; i++) await c.produceBatch(topic, Array.from({ length: 10 }, () => ({ data: body })));
      let info = (await c.topics()).find(t => t.name === topic)!;
      expect(info.nextOffset).toBe(100);
      const deadline = Date.now() + 10_000;
      // retention deletes one segment at a time: wait until it is done, not just begun
      while (info.bytes > 8192 && Date.now() < deadline) {
        await sleep(25);
        info = (await c.topics()).find(t => t.name === topic)!;
      }
      expect(info.earliestOffset).toBeGreaterThan(0);
      expect(info.bytes).toBeLessThanOrEqual(8192);
      expect((await c.read(topic, { max: 1 }))[0].offset).toBe(info.earliestOffset);
    } finally {
      await c.close();
      await dir.remove();
    }
  });
});
