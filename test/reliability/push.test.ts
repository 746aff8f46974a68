import { describe, expect, it } from '@jest/globals';
import type { Delivery } from '../../lib/connection/types.js';
import { DELIVERY_OVERHEAD } from '../../lib/broker/dispatcher.js';
import { openBroker, until } from '../broker/helpers.js';

describe('a push subscriber that stops reading', () => {
  for (const durable of [false, true]) {
    it(`is bounded by its buffer; the other subscriber and the publisher are unaffected; its drops are counted (${durable ? 'durable' : 'push-only'} topic)`, async () => {
      const { broker } = await openBroker({ topics: { feed: { durable } } });
      const c = broker.connect();
      const size = 1000;
      const bufferBytes = 10 * (size + 'feed'.length + DELIVERY_OVERHEAD);
      const stuck: Delivery[] = [];
      const stuckSub = await c.subscribe({ pattern: 'feed', bufferBytes }, d => stuck.push(d)); // never calls done()
      const healthy: Delivery[] = [];
      const sub = await c.subscribe({ pattern: 'feed', bufferBytes }, d => {
        healthy.push(d);
        sub.done(d);
      });
      const total = 500;
      let produced = 0;
      for (let i = 0; i < total; i += 50) {
        const r = await c.produce('feed', Array.from({ length: 50 }, (_, k) => ({ value: Buffer.alloc(size, (i + k) % 256) })));
        produced += r.length;
      }
      await until(() => healthy.length === total, 'the healthy subscriber');
      expect(produced).toBe(total);
      // The stuck one holds exactly what fits its buffer, no more.
      expect(stuck.length).toBe(10);
      expect(stuck.map(d => d.value[0])).toEqual(Array.from({ length: 10 }, (_, i) => i));
      const stats = await c.stats();
      const drops = Object.entries(stats.dropped);
      expect(drops).toHaveLength(1);
      expect(drops[0][0]).toMatch(/^feed@/);
      expect(drops[0][1]).toBe(total - 10);
      expect(stats.published).toBe(total);
      // Once it catches up, it receives again — the buffer bounded it, it was not cut off.
      for (const d of stuck.splice(0)) stuckSub.done(d);
      await c.produce('feed', [{ value: Buffer.alloc(size, 7) }]);
      await until(() => healthy.length === total + 1 && stuck.length === 1, 'the last message');
      expect((await c.stats()).dropped[drops[0][0]]).toBe(total - 10);
      await broker.close();
    });
  }
});

