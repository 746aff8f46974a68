import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { lastValueFrom, type Observable } from 'rxjs';
import type { BusConnection, OutgoingMessage, ProduceResult } from '../../lib/connection/types.js';
import { LogBusClient } from '../../lib/index.js';
import type { ResolvedOptions } from '../../lib/options.js';
import { codeOf, uniqueTopic } from './helpers.js';

const dataDir = ':memory:';
const options = { dataDir, topics: { 'small.*': { maxMessageBytes: 1024 } } };

/** Counts the produce() calls that reach the connection, with their sizes. */
class CountingClient extends LogBusClient {
  readonly produceSizes: number[] = [];
  protected override createConnection(resolved: ResolvedOptions): BusConnection {
    const inner = super.createConnection(resolved);
    const produce = inner.produce.bind(inner);
    inner.produce = (topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]> => {
      this.produceSizes.push(messages.length);
      return produce(topic, messages);
    };
    return inner;
  }
}

let reader: LogBusClient;
beforeAll(() => {
  reader = new LogBusClient(options);
});
afterAll(async () => {
  await reader.close();
});

describe('emit() coalescing', () => {
  it('emits of one tick go out as one produce; each resolves with its own offset, in call order', async () => {
    const c = new CountingClient(options);
    await c.connect();
    const topic = uniqueTopic('coalesce');
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => lastValueFrom(c.emit(topic, { i }))));
    expect(results).toEqual(Array.from({ length: 50 }, (_, offset) => ({ topic, offset })));
    expect(c.produceSizes).toEqual([50]);
    expect((await reader.read(topic)).map(m => m.data)).toEqual(Array.from({ length: 50 }, (_, i) => ({ i })));
    await c.close();
  });

  it('keeps each emit its own headers (Nest 12 packet metadata) inside a batch', async () => {
    const c = new CountingClient(options);
    let n = 0;
    c.setOnDispatchHook(packet => {
      if (n++ % 2 === 0) packet.metadata = { seq: String(n) };
    });
    await c.connect();
    const topic = uniqueTopic('coalesce.meta');
    await Promise.all([1, 2, 3].map(i => lastValueFrom(c.emit(topic, i))));
    expect(c.produceSizes).toEqual([3]);
    expect((await reader.read(topic)).map(m => m.headers)).toEqual([{ seq: '1' }, {}, { seq: '3' }]);
    await c.close();
  });

  it('an oversized emit fails alone: the others of its batch are stored', async () => {
    const c = new CountingClient(options);
    await c.connect();
    const topic = uniqueTopic('small.coalesce');
    const [a, big, b] = [lastValueFrom(c.emit(topic, 'a')), lastValueFrom(c.emit(topic, 'x'.repeat(2000))), lastValueFrom(c.emit(topic, 'b'))];
    expect(await codeOf(big)).toBe('MESSAGE_TOO_LARGE');
    expect([await a, await b]).toEqual([
      { topic, offset: 0 },
      { topic, offset: 1 },
    ]);
    expect((await reader.read(topic)).map(m => m.data)).toEqual(['a', 'b']);
    await c.close();
  });

  it('close() right after emits were handed over still flushes them; later emits fail with CLOSED', async () => {
    const c = new LogBusClient(options);
    let n = 0;
    let closing: Promise<void> | undefined;
    // the hook runs as each emit is handed to the client: close() starts while the first two wait to go out
    c.setOnDispatchHook(() => {
      if (++n === 3) closing = c.close();
    });
    await c.connect();
    const topic = uniqueTopic('coalesce.close');
    const emitted = [1, 2, 3].map(i => lastValueFrom(c.emit(topic, i)));
    expect((await Promise.all(emitted.slice(0, 2))).map(r => r.offset)).toEqual([0, 1]);
    expect(await codeOf(emitted[2])).toBe('CLOSED');
    await closing;
    expect((await reader.read(topic)).map(m => m.data)).toEqual([1, 2]);
  });

  it('emits to different topics in one tick each reach their own topic', async () => {
    const c = new CountingClient(options);
    await c.connect();
    const [t1, t2] = [uniqueTopic('coalesce.a'), uniqueTopic('coalesce.b')];
    await Promise.all([lastValueFrom(c.emit(t1, 1)), lastValueFrom(c.emit(t2, 2)), lastValueFrom(c.emit(t1, 3))]);
    expect(c.produceSizes.sort()).toEqual([1, 2]);
    expect((await reader.read(t1)).map(m => m.data)).toEqual([1, 3]);
    expect((await reader.read(t2)).map(m => m.data)).toEqual([2]);
    await c.close();
  });

  it('emit() is hot, as Nest\'s: the event is published without a subscriber; errors reach subscribers', async () => {
    const c = new LogBusClient(options);
    await c.connect();
    const topic = uniqueTopic('coalesce.hot');
    expect(await codeOf(lastValueFrom(c.emit('bad..topic', 1)))).toBe('INVALID_TOPIC');
    c.emit(topic, 'unobserved');
    await c.close();
    expect((await reader.read(topic)).map(m => m.data)).toEqual(['unobserved']);
  });

  it('emit(): every early subscriber gets the result; one subscribing after it settled gets what Nest\'s stream gives (completion, or the error)', async () => {
    const c = new LogBusClient(options);
    await c.connect();
    const topic = uniqueTopic('coalesce.subs');
    const seen = (o: Observable<unknown>) =>
      new Promise<string[]>(resolve => {
        const got: string[] = [];
        o.subscribe({
          next: v => got.push(`next ${(v as { offset: number }).offset}`),
          error: (e: { code: string }) => resolve([...got, `error ${e.code}`]),
          complete: () => resolve([...got, 'complete']),
        });
      });
    const ok = c.emit(topic, 'x');
    const [a, b] = await Promise.all([seen(ok), seen(ok)]);
    expect([a, b]).toEqual([['next 0', 'complete'], ['next 0', 'complete']]);
    expect(await seen(ok)).toEqual(['complete']);

    const bad = c.emit('bad..topic', 1);
    expect(await seen(bad)).toEqual(['error INVALID_TOPIC']);
    expect(await seen(bad)).toEqual(['error INVALID_TOPIC']);
    await c.close();
  });
});
