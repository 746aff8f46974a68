import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import type { BusConnection, Consumer, Delivery } from '../../lib/connection/types.js';
import { buf, openBroker, spec, until } from './helpers.js';

/**
 * Random handler behaviour (ack now, ack later, fail, member leaves) against
 * the real group logic: at the end every message is acked exactly once as
 * far as the group is concerned, per key in publish order with no overlap,
 * and the committed position is at the end.
 */
describe('consumer group invariants under random handler behaviour', () => {
  it('holds for random schedules', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 60 }),
          keys: fc.integer({ min: 0, max: 4 }),
          concurrency: fc.integer({ min: 1, max: 5 }),
          members: fc.integer({ min: 1, max: 3 }),
          // per delivery: 0 ack now, 1 ack after a tick, 2 nack, 3 the member leaves (a new one joins)
          plan: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 50 }),
        }),
        async ({ n, keys, concurrency, members, plan }) => {
          const { broker } = await openBroker();
          try {
            const pub = broker.connect();
            let step = 0;
            let leaves = 0;
            const acked = new Map<number, number>(); // offset → times acked while its member was live
            const running = new Map<string, number>(); // key → offset in flight
            const keyOrder = new Map<string, number[]>();
            const overlaps: string[] = [];
            const conns: BusConnection[] = [];

            const join = async (): Promise<void> => {
              const conn = broker.connect();
              conns.push(conn);
              let live = true;
              const mine = new Set<number>(); // offsets this member is running
              const c: Consumer = await conn.consume(spec('p', 'g', { concurrency, backoffMs: [0, 1], maxDeliver: 1000, deadLetter: false }), d => handle(d));
              const finish = (d: Delivery, ok: boolean): void => {
                if (!live) return;
                mine.delete(d.offset!);
                if (d.key !== undefined && running.get(d.key) === d.offset) running.delete(d.key);
                if (ok) {
                  acked.set(d.offset!, (acked.get(d.offset!) ?? 0) + 1);
                  if (d.key !== undefined) keyOrder.get(d.key)!.push(d.offset!);
                  c.ack(d);
                } else c.nack(d, 'planned failure');
              };
              const handle = (d: Delivery): void => {
                if (!live) return; // a member on its way out abandons what it still gets
                if (d.key !== undefined) {
                  if (running.has(d.key)) overlaps.push(`${d.key}: ${running.get(d.key)} and ${d.offset}`);
                  running.set(d.key, d.offset!);
                  mine.add(d.offset!);
                  if (!keyOrder.has(d.key)) keyOrder.set(d.key, []);
                }
                const action = plan[step++ % plan.length];
                if (action === 0) finish(d, true);
                else if (action === 1) setTimeout(() => finish(d, true), 1);
                else if (action === 2 && d.deliveryCount < 3) finish(d, false);
                else if (action === 3 && leaves < 5) {
                  leaves++;
                  live = false;
                  // its deliveries are abandoned: no longer running from the group's point of view
                  for (const [k, off] of running) if (off === d.offset || mine.has(off)) running.delete(k);
                  setTimeout(() => {
                    void conn.close().then(join);
                  }, 0);
                } else finish(d, true);
              };
            };
            for (let i = 0; i < members; i++) await join();
            const msgs = Array.from({ length: n }, (_, i) => ({ value: buf(String(i)), key: keys ? `k${i % keys}` : undefined }));
            await pub.produce('p', msgs);
            await until(() => acked.size === n, `all ${n} acked`, 10_000);
            const [g] = await pub.groups('p');
            expect(g.committedOffset).toBe(n);
            expect(overlaps).toEqual([]);
            expect([...acked.values()].every(v => v === 1)).toBe(true);
            for (const seq of keyOrder.values()) expect(seq).toEqual([...seq].sort((a, b) => a - b));
            await Promise.all(conns.map(c => c.close()));
          } finally {
            await broker.close();
          }
        },
      ),
      { numRuns: 100, seed: 20261127 },
    );
  });
});
