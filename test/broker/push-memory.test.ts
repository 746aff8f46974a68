import { afterEach, describe, expect, it } from '@jest/globals';
import { DELIVERY_OVERHEAD, HEADER_OVERHEAD } from '../../lib/broker/dispatcher.js';
import type { BusConnection, Delivery } from '../../lib/connection/types.js';
import { LogBroker } from '../../lib/wire/log-broker.js';
import { WIRE_HELD_OVERHEAD } from '../../lib/wire/server.js';
import { client, quietBrokerLogger } from '../wire/helpers.js';
import { openBroker, until } from './helpers.js';

const PUBLISHED = 200_000;
const BATCH = 1000;
const BUFFER_BYTES = 64 * 1024;
const TOPIC = 'feed.memory';

/**
 * What one held message costs the broker: every byte it carries plus the
 * measured per-message overhead of the side that holds it (a whole delivery
 * in process; a record, payload released, in the wire server).
 */
function footprint(d: Delivery, overhead: number): number {
  let n = overhead + Buffer.byteLength(d.topic) + d.value.length + (d.key === undefined ? 0 : Buffer.byteLength(d.key));
  for (const [k, v] of Object.entries(d.headers ?? {})) n += HEADER_OVERHEAD + Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function inProcess(): Promise<BusConnection> {
  const { broker } = await openBroker({ topics: { [TOPIC]: { durable: false } } });
  closers.push(() => broker.close());
  return broker.connect();
}

async function overTheWire(): Promise<BusConnection> {
  const broker = await LogBroker.start({
    dataDir: ':memory:',
    port: 0,
    topics: { [TOPIC]: { durable: false } },
    logger: quietBrokerLogger,
    wire: { logger: { log() {}, warn() {} } },
  });
  closers.push(() => broker.close());
  const c = client(broker.address().port);
  await c.connect();
  closers.push(() => c.close());
  return c;
}

describe('a stuck push subscriber holds no more than its buffer', () => {
  for (const [name, open, overhead] of [
    ['in process', inProcess, DELIVERY_OVERHEAD],
    ['over the wire', overTheWire, WIRE_HELD_OVERHEAD],
  ] as const) {
    it(`${name}: 200,000 small messages, 64 KiB buffer: held bytes bounded, every message held or counted as dropped, the fast subscriber gets all`, async () => {
      const c = await open();
      const stuck: Delivery[] = [];
      await c.subscribe({ pattern: TOPIC, bufferBytes: BUFFER_BYTES }, d => void stuck.push(d)); // never done()
      let fast = 0;
      const fastSub = await c.subscribe({ pattern: TOPIC }, d => {
        fast++;
        fastSub.done(d);
      });
      // 20 B payloads with a key and a header: the per-message overhead and metadata dominate, as in the bug.
      const batch = Array.from({ length: BATCH }, (_, i) => ({ key: `k${i % 10}`, headers: { trace: 'abc' }, value: Buffer.alloc(20, i % 256) }));
      for (let sent = 0; sent < PUBLISHED; sent += BATCH) {
        await c.produce(TOPIC, batch);
        // a publisher no faster than the fast subscriber: its lag stays well inside its default 8 MiB buffer
        await until(() => fast >= sent - 4 * BATCH, 'the fast subscriber to keep up', 30_000);
      }
      await until(() => fast === PUBLISHED, 'the fast subscriber', 60_000);

      const held = stuck.reduce((n, d) => n + footprint(d, overhead), 0);
      expect(held).toBeLessThanOrEqual(BUFFER_BYTES);
      // The buffer is used up to its size, not cut short: as many as fit.
      expect(stuck.length).toBe(Math.floor(BUFFER_BYTES / footprint(stuck[0], overhead)));
      const stats = await c.stats();
      const drops = Object.values(stats.dropped);
      expect(drops).toHaveLength(1);
      expect(stuck.length + drops[0]).toBe(PUBLISHED);
      expect(stats.published).toBe(PUBLISHED);
    }, 120_000);
  }
});
