import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { IdTable } from '../lib/id-table.js';

describe('IdTable', () => {
  it('behaves as a Map for any sequence of set, delete and take, whatever the ids', () => {
    // ids mostly increasing with a window, plus strays: stragglers, collisions, growth and u32-sized ids
    const id = fc.oneof(fc.nat({ max: 300 }), fc.nat({ max: 0xffffffff }), fc.constant(2 ** 40 + 7));
    const op = fc.oneof(
      fc.record({ k: fc.constant('set' as const), id, v: fc.nat() }),
      fc.record({ k: fc.constant('delete' as const), id }),
      fc.record({ k: fc.constant('take' as const), id }),
      fc.record({ k: fc.constant('next' as const), n: fc.integer({ min: 1, max: 200 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.array(op, { maxLength: 400 }), (slots, ops) => {
        const t = new IdTable<number>(slots);
        const m = new Map<number, number>();
        let seq = 0;
        for (const o of ops) {
          if (o.k === 'set') {
            t.set(o.id, o.v);
            m.set(o.id, o.v);
          } else if (o.k === 'delete') {
            expect(t.delete(o.id)).toBe(m.delete(o.id));
          } else if (o.k === 'take') {
            expect(t.take(o.id)).toBe(m.get(o.id));
            m.delete(o.id);
          } else {
            // a run of sequential ids, as requests in flight get them
            for (let i = 0; i < o.n; i++, seq++) {
              t.set(seq, seq);
              m.set(seq, seq);
              if (seq % 3 !== 0) {
                t.delete(seq - 1);
                m.delete(seq - 1);
              }
            }
          }
          expect(t.size).toBe(m.size);
        }
        for (const [k, v] of m) {
          expect(t.get(k)).toBe(v);
          expect(t.has(k)).toBe(true);
        }
        expect(t.valuesList().sort((a, b) => a - b)).toEqual([...m.values()].sort((a, b) => a - b));
        t.clear();
        expect(t.size).toBe(0);
        expect(t.valuesList()).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps a request stuck for long while 100,000 others pass', () => {
    const t = new IdTable<string>(64);
    t.set(0, 'stuck');
    for (let id = 1; id <= 100_000; id++) {
      t.set(id, 'x');
      if (id > 100) t.delete(id - 100);
    }
    expect(t.get(0)).toBe('stuck');
    expect(t.size).toBe(101);
    expect(t.take(0)).toBe('stuck');
    expect(t.has(0)).toBe(false);
  });
});
