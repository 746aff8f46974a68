import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import type { Broker } from '../../lib/broker/broker.js';
import type { BusConnection, Consumer, Delivery } from '../../lib/connection/types.js';
import { openBroker, spec, until } from '../broker/helpers.js';

/**
 * Model-based test (fast-check commands) of one consumer group: members join,
 * leave (close), die (their connection closes with deliveries unacked), ack,
 * nack, and messages with keys are published, in random order. The model
 * knows what was published and acked. Checked on every delivery:
 *  - no two live deliveries of one key at once (no same-key overlap);
 *  - a key's delivery is always its lowest unacked offset (per-key order);
 * and once the system quiesces (a member acks everything): every published
 * message was acked (at-least-once) and the group's position is at the end.
 */

interface Member {
  conn: BusConnection;
  consumer: Consumer;
  held: Delivery[];
  live: boolean;
}

interface Real {
  broker: Broker;
  pub: BusConnection;
  members: Member[];
  violations: string[];
  /** Quiescing: every member acks what it gets at once. */
  draining: boolean;
}

interface Model {
  published: (string | undefined)[];
  acked: Set<number>;
}

const settle = async () => {
  for (let i = 0; i < 4; i++) await new Promise(r => setImmediate(r));
};

function onDelivery(real: Real, model: Model, m: Member, d: Delivery): void {
  if (!m.live) return;
  const o = d.offset!;
  if (d.key !== undefined) {
    for (const other of real.members) {
      if (!other.live) continue;
      for (const h of other.held) if (h.key === d.key) real.violations.push(`key ${d.key}: ${h.offset} and ${o} live at once`);
    }
    const lowest = model.published.findIndex((k, i) => k === d.key && !model.acked.has(i));
    if (lowest !== o) real.violations.push(`key ${d.key}: delivered ${o} while ${lowest} is its lowest unacked offset`);
  }
  m.held.push(d);
  if (real.draining) {
    m.held.splice(m.held.indexOf(d), 1);
    model.acked.add(o);
    m.consumer.ack(d);
  }
}

async function join(real: Real, model: Model, concurrency: number): Promise<void> {
  const conn = real.broker.connect();
  const m = { conn, held: [], live: true } as unknown as Member;
  m.consumer = await conn.consume(spec('m', 'g', { concurrency, backoffMs: [0], maxDeliver: 1_000_000, deadLetter: false }), d => onDelivery(real, model, m, d));
  real.members.push(m);
}

const live = (r: Real) => r.members.filter(m => m.live);
const pick = <T>(xs: T[], i: number): T | undefined => (xs.length ? xs[i % xs.length] : undefined);

class Join implements fc.AsyncCommand<Model, Real> {
  constructor(readonly concurrency: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    await join(real, model, this.concurrency);
    await settle();
  }
  toString = () => `join(${this.concurrency})`;
}

class Publish implements fc.AsyncCommand<Model, Real> {
  constructor(readonly keys: (string | undefined)[]) {}
  check = () => true;
  async run(model: Model, real: Real) {
    const r = await real.pub.produce('m', this.keys.map(key => ({ key, value: Buffer.from('v') })));
    expect(r.map(x => x.offset)).toEqual(this.keys.map((_, i) => model.published.length + i));
    model.published.push(...this.keys);
    await settle();
  }
  toString = () => `publish(${JSON.stringify(this.keys)})`;
}

class Settle implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly who: number,
    readonly what: 'ack' | 'nack',
    readonly which: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real) {
    const m = pick(live(real), this.who);
    const d = m && pick(m.held, this.which);
    if (!m || !d) return;
    m.held.splice(m.held.indexOf(d), 1);
    if (this.what === 'ack') {
      model.acked.add(d.offset!);
      m.consumer.ack(d);
    } else m.consumer.nack(d, 'random failure');
    await settle();
  }
  toString = () => `${this.what}(member ${this.who}, delivery ${this.which})`;
}

class Leave implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly who: number,
    readonly die: boolean,
  ) {}
  check = () => true;
  async run(_model: Model, real: Real) {
    const m = pick(live(real), this.who);
    if (!m) return;
    m.live = false;
    m.held = [];
    // Dying: the session ends under it (no close of the consumer, nothing acked).
    if (this.die) await m.conn.close();
    else await m.consumer.close();
    await settle();
  }
  toString = () => `${this.die ? 'die' : 'leave'}(member ${this.who})`;
}

const keyArb = fc.oneof(fc.constant(undefined), fc.constantFrom('a', 'b', 'c'));
const commands = [
  fc.integer({ min: 1, max: 4 }).map(c => new Join(c)),
  fc.array(keyArb, { minLength: 1, maxLength: 5 }).map(k => new Publish(k)),
  fc.tuple(fc.nat(5), fc.nat(5)).map(([w, i]) => new Settle(w, 'ack', i)),
  fc.tuple(fc.nat(5), fc.nat(5)).map(([w, i]) => new Settle(w, 'ack', i)),
  fc.tuple(fc.nat(5), fc.nat(5)).map(([w, i]) => new Settle(w, 'nack', i)),
  fc.tuple(fc.nat(5), fc.boolean()).map(([w, die]) => new Leave(w, die)),
];

describe('consumer group against a model (fast-check commands)', () => {
  it('keeps at-least-once, per-key order and no same-key overlap through joins, leaves, deaths, acks and nacks', async () => {
    let runs = 0;
    const seen = { published: 0, deliveries: 0, deaths: 0, nacks: 0 };
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 80, size: 'large' }), async cmds => {
        runs++;
        const { broker } = await openBroker();
        const real: Real = { broker, pub: broker.connect(), members: [], violations: [], draining: false };
        const model: Model = { published: [], acked: new Set() };
        try {
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          // Quiesce: every live member (and one more) acks whatever it holds or gets.
          real.draining = true;
          await join(real, model, 8);
          for (const m of live(real)) {
            for (const d of m.held.splice(0)) {
              model.acked.add(d.offset!);
              m.consumer.ack(d);
            }
          }
          const n = model.published.length;
          await until(() => model.acked.size === n || real.violations.length > 0, `all ${n} acked`);
          expect(real.violations).toEqual([]);
          expect([...model.acked].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
          const committed = async () => (await real.pub.groups('m')).find(x => x.group === 'g')?.committedOffset ?? 0;
          for (let i = 0; (await committed()) !== n && i < 500; i++) await new Promise(r => setTimeout(r, 2));
          expect(await committed()).toBe(n);
          seen.published += n;
          seen.deaths += cmds.toString().split('die(').length - 1;
          seen.nacks += cmds.toString().split('nack(').length - 1;
          seen.deliveries += (await real.pub.stats()).delivered;
        } finally {
          await broker.close();
        }
      }),
      { numRuns: 100, seed: 20261127 },
    );
    expect(runs).toBe(100);
    // The runs really exercised the group (not 100 empty schedules).
    expect(seen.published).toBeGreaterThan(300);
    expect(seen.deliveries).toBeGreaterThan(seen.published);
    expect(seen.deaths).toBeGreaterThan(10);
    expect(seen.nacks).toBeGreaterThan(10);
  }, 60_000);
});
