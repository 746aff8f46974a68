import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { Consumer, Delivery } from '../../lib/connection/types.js';
import { Bus, buf, deleteKeys, requireRedis, sleep, spec, text, uniquePrefix, waitFor } from './helpers.js';

let admin: Redis;
const prefix = uniquePrefix();
const bus = new Bus(prefix);

beforeAll(async () => {
  admin = await requireRedis();
});
afterAll(async () => {
  await bus.closeAll();
  await deleteKeys(admin, prefix);
  admin.disconnect();
});

const values = (n: number, tag = 'm') => Array.from({ length: n }, (_, i) => ({ value: buf(`${tag}${i}`) }));

describe('Redis driver: pull', () => {
  test('each message once per group across members; two groups are independent', async () => {
    const pub = await bus.connection();
    await pub.produce('work', values(30));
    const seen: Record<string, string[]> = { a1: [], a2: [], b: [] };
    const members: Array<[string, string]> = [['a1', 'A'], ['a2', 'A'], ['b', 'B']];
    for (const [who, group] of members) {
      const conn = await bus.connection();
      const c: Consumer = await conn.consume(spec('work', group, { concurrency: 2 }), d => {
        seen[who].push(text(d));
        expect(d.group).toBe(group);
        expect(d.deliveryCount).toBe(1);
        setTimeout(() => c.ack(d), 1);
      });
    }
    await pub.produce('work', values(30, 'late'));
    await waitFor('group A', () => seen.a1.length + seen.a2.length === 60);
    await waitFor('group B', () => seen.b.length === 60);
    await sleep(100);
    const a = [...seen.a1, ...seen.a2].sort();
    expect(new Set(a).size).toBe(60);
    expect(a).toEqual([...seen.b].sort());
    expect(seen.a1.length).toBeGreaterThan(0);
    expect(seen.a2.length).toBeGreaterThan(0);
    const groups = await pub.groups('work');
    expect(groups.sort((x, y) => x.group.localeCompare(y.group))).toEqual([
      { group: 'A', committedOffset: 60, lag: 0, inFlight: 0 },
      { group: 'B', committedOffset: 60, lag: 0, inFlight: 0 },
    ]);
  });

  test('a failing handler is retried after the backoff, with growing deliveryCount, then dead-lettered with headers', async () => {
    const own = new Bus(uniquePrefix()); // its own prefix: stats() are bus-wide
    const pub = await own.connection();
    const conn = await own.connection();
    await pub.produce('pay', [{ value: buf('boom'), key: 'cust-1', headers: { trace: 't1' } }, { value: buf('fine') }]);
    const attempts: Array<{ v: string; n: number; at: number }> = [];
    const c = await conn.consume(spec('pay', 'billing', { maxDeliver: 3, backoffMs: [30, 60] }), d => {
      attempts.push({ v: text(d), n: d.deliveryCount, at: Date.now() });
      if (text(d) === 'boom') c.nack(d, 'card declined');
      else c.ack(d);
    });
    await waitFor('dead letter', async () => (await pub.read('pay.dlq', 'earliest', 10)).length === 1);
    const boom = attempts.filter(a => a.v === 'boom');
    expect(boom.map(a => a.n)).toEqual([1, 2, 3]);
    expect(attempts.filter(a => a.v === 'fine').map(a => a.n)).toEqual([1]);
    const [dl] = await pub.read('pay.dlq', 'earliest', 10);
    expect(text(dl)).toBe('boom');
    expect(dl.key).toBe('cust-1');
    expect(dl.headers).toEqual({
      trace: 't1',
      'x-logbus-topic': 'pay',
      'x-logbus-offset': '0',
      'x-logbus-error': 'card declined',
      'x-logbus-deliveries': '3',
    });
    await waitFor('acked on its own topic', async () => (await pub.groups('pay'))[0].inFlight === 0);
    expect((await pub.groups('pay'))[0]).toEqual({ group: 'billing', committedOffset: 2, lag: 0, inFlight: 0 });
    const stats = await pub.stats();
    expect(stats.deadLettered).toBe(1);
    expect(stats.redelivered).toBe(2);
    await own.closeAll();
    await deleteKeys(admin, own.prefix);
  });

  test('deadLetter false drops the message after the last attempt', async () => {
    const pub = await bus.connection();
    const conn = await bus.connection();
    await pub.produce('drop', [{ value: buf('x') }]);
    let n = 0;
    const c = await conn.consume(spec('drop', 'g', { maxDeliver: 2, backoffMs: [0], deadLetter: false }), d => {
      n++;
      c.nack(d, 'nope');
    });
    await waitFor('dropped', async () => (await pub.groups('drop'))[0].inFlight === 0 && n === 2);
    expect(await pub.read('drop.dlq', 'earliest', 10)).toEqual([]);
    expect(bus.warnings.some(w => w.includes('drop@0') && w.includes('nope'))).toBe(true);
  });

  test('unacked past ackWaitMs: delivered again to another member', async () => {
    const pub = await bus.connection();
    const connA = await bus.connection();
    const connB = await bus.connection();
    const gotA: Delivery[] = [];
    const gotB: Delivery[] = [];
    await connA.consume(spec('slow', 'g', { ackWaitMs: 300 }), d => gotA.push(d)); // never acks
    await pub.produce('slow', [{ value: buf('stuck') }]);
    await waitFor('first delivery', () => gotA.length === 1);
    const cb = await connB.consume(spec('slow', 'g', { ackWaitMs: 300 }), d => {
      gotB.push(d);
      cb.ack(d);
    });
    await waitFor('redelivery to B', () => gotB.length === 1);
    expect(text(gotB[0])).toBe('stuck');
    expect(gotB[0].deliveryCount).toBe(2);
    expect(gotB[0].offset).toBe(0);
  });

  test('unacked past ackWaitMs with no other member: delivered again to the same member', async () => {
    const pub = await bus.connection();
    const conn = await bus.connection();
    const got: Delivery[] = [];
    const c = await conn.consume(spec('alone', 'g', { ackWaitMs: 200 }), d => {
      got.push(d);
      if (d.deliveryCount === 2) c.ack(d);
    });
    await pub.produce('alone', [{ value: buf('x') }, { value: buf('y') }]);
    await waitFor('redelivery', () => got.length >= 2);
    expect(got.slice(0, 2).map(d => [text(d), d.deliveryCount])).toEqual([
      ['x', 1],
      ['x', 2],
    ]);
    await waitFor('the next message', () => got.some(d => text(d) === 'y'));
    c.ack(got[0]); // a late ack of the first delivery is harmless
    await waitFor('acked', async () => (await pub.groups('alone'))[0].committedOffset === 2 || got.length > 3);
  });

  test('a member that closes without acking: its messages go to another member without waiting for ackWaitMs', async () => {
    const pub = await bus.connection();
    const connA = await bus.connection();
    const connB = await bus.connection();
    const gotA: Delivery[] = [];
    const gotB: string[] = [];
    const a = await connA.consume(spec('handoff', 'g', { ackWaitMs: 60_000 }), d => gotA.push(d));
    const b = await connB.consume(spec('handoff', 'g', { ackWaitMs: 60_000 }), d => {
      gotB.push(text(d));
      b.ack(d);
    });
    await pub.produce('handoff', values(6));
    await waitFor('A holds one', () => gotA.length === 1);
    await a.close();
    await waitFor('B gets the rest', () => gotB.length === 6, 8000);
    expect([...gotB].sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  });

  test('a member that dies (kill -9) before acking: its message goes to another member without waiting for ackWaitMs', async () => {
    // the fixture runs from the tsc build, as `npm test` makes it
    const fixture = '.build/test/redis/fixtures/hold-one.js';
    if (!existsSync(fixture)) throw new Error(`${fixture} is missing: run \`npx tsc -p tsconfig.json\` first (npm test does)`);
    const pub = await bus.connection();
    await pub.produce('crash', [{ value: buf('orphan') }]);
    const child = spawn(process.execPath, [fixture, bus.url, prefix, 'crash', 'g'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise(r => child.once('exit', r));
    try {
      let out = '';
      child.stdout!.on('data', b => (out += b));
      await waitFor('the child to take the message', () => out.includes('took 0'));
      const conn = await bus.connection();
      const got: Delivery[] = [];
      const c = await conn.consume(spec('crash', 'g', { ackWaitMs: 600_000 }), d => {
        got.push(d);
        c.ack(d);
      });
      child.kill('SIGKILL');
      await exited;
      await waitFor('the orphan at a live member', () => got.length === 1, 10_000);
      expect(text(got[0])).toBe('orphan');
      expect(got[0].deliveryCount).toBe(2);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test("from 'latest', { offset } and { timestamp } apply to new groups only; resetGroup starts over", async () => {
    const pub = await bus.connection();
    await pub.produce('hist', values(5));
    await sleep(30);
    const mid = Date.now();
    await sleep(30);
    await pub.produce('hist', values(2, 'n'));
    const conn = await bus.connection();
    const got: Record<string, string[]> = { latest: [], offset: [], time: [] };
    const consumers: Consumer[] = [];
    for (const [g, from] of [
      ['latest', 'latest'],
      ['offset', { offset: 3 }],
      ['time', { timestamp: mid }],
    ] as const) {
      const c = await conn.consume(spec('hist', g, { from }), d => {
        got[g].push(text(d));
        c.ack(d);
      });
      consumers.push(c);
    }
    await pub.produce('hist', [{ value: buf('new') }]);
    await waitFor('all three', () => got.latest.length === 1 && got.offset.length === 5 && got.time.length === 3);
    expect(got.latest).toEqual(['new']);
    expect(got.offset).toEqual(['m3', 'm4', 'n0', 'n1', 'new']);
    expect(got.time).toEqual(['n0', 'n1', 'new']);

    // an existing group resumes where it was, whatever `from` says
    await consumers[0].close();
    const again: string[] = [];
    const c2 = await conn.consume(spec('hist', 'latest', { from: 'earliest' }), d => {
      again.push(text(d));
      c2.ack(d);
    });
    await pub.produce('hist', [{ value: buf('newer') }]);
    await waitFor('resumed', () => again.length === 1);
    expect(again).toEqual(['newer']);
    await c2.close();

    expect((await pub.groups('hist')).find(g => g.group === 'latest')).toEqual({ group: 'latest', committedOffset: 9, lag: 0, inFlight: 0 });
    await pub.resetGroup('hist', 'latest', { offset: 6 });
    expect((await pub.groups('hist')).find(g => g.group === 'latest')).toEqual({ group: 'latest', committedOffset: 6, lag: 3, inFlight: 0 });
    const replay: string[] = [];
    const c3 = await conn.consume(spec('hist', 'latest'), d => {
      replay.push(text(d));
      c3.ack(d);
    });
    await waitFor('replay', () => replay.length === 3);
    expect(replay).toEqual(['n1', 'new', 'newer']);
    await pub.resetGroup('hist', 'latest', 'earliest');
    await waitFor('replay from the start', () => replay.length === 3 + 9);
  });

  test('groups(): lag and inFlight while messages wait and run', async () => {
    const pub = await bus.connection();
    const conn = await bus.connection();
    await pub.produce('lagging', values(10));
    const held: Delivery[] = [];
    const c = await conn.consume(spec('lagging', 'g', { concurrency: 3 }), d => held.push(d));
    await waitFor('three in flight', () => held.length === 3);
    expect(await pub.groups('lagging')).toEqual([{ group: 'g', committedOffset: 0, lag: 10, inFlight: 3 }]);
    c.ack(held[1]);
    c.ack(held[0]);
    await waitFor('acks written', async () => (await pub.groups('lagging'))[0].committedOffset === 2);
    await waitFor('refilled', () => held.length === 5);
    const g = (await pub.groups('lagging'))[0];
    expect(g).toEqual({ group: 'g', committedOffset: 2, lag: 8, inFlight: 3 });
    expect(await pub.groups('nobody-consumes-this')).toEqual([]);
  });

  test('same-key messages run in publish order, never two at once, across members', async () => {
    const pub = await bus.connection();
    const keys = ['k1', 'k2', 'k3'];
    const msgs = Array.from({ length: 45 }, (_, i) => ({ value: buf(String(i)), key: keys[i % 3] }));
    const running = new Set<string>();
    const order: Record<string, number[]> = { k1: [], k2: [], k3: [] };
    let overlap = 0;
    let maxParallel = 0;
    for (let m = 0; m < 2; m++) {
      const conn = await bus.connection();
      const c = await conn.consume(spec('keyed', 'g', { concurrency: 4 }), d => {
        if (running.has(d.key!)) overlap++;
        running.add(d.key!);
        maxParallel = Math.max(maxParallel, running.size);
        order[d.key!].push(Number(text(d)));
        setTimeout(() => {
          running.delete(d.key!);
          c.ack(d);
        }, 2 + (Number(text(d)) % 4));
      });
    }
    for (let i = 0; i < msgs.length; i += 5) await pub.produce('keyed', msgs.slice(i, i + 5));
    await waitFor('all keyed', () => order.k1.length + order.k2.length + order.k3.length === 45, 15_000);
    expect(overlap).toBe(0);
    for (const [k, offs] of Object.entries(order)) {
      const expected = msgs.map((m, i) => (m.key === k ? i : -1)).filter(i => i >= 0);
      expect(offs).toEqual(expected);
    }
    expect(maxParallel).toBeGreaterThan(1); // different keys did run side by side
  });

  test('a failing keyed message holds back later messages of its key only', async () => {
    const pub = await bus.connection();
    const conn = await bus.connection();
    await pub.produce('held', [
      { value: buf('a0'), key: 'a' },
      { value: buf('a1'), key: 'a' },
      { value: buf('b0'), key: 'b' },
    ]);
    const seen: string[] = [];
    let failed = false;
    const c = await conn.consume(spec('held', 'g', { concurrency: 4, backoffMs: [150] }), d => {
      seen.push(`${text(d)}#${d.deliveryCount}`);
      if (text(d) === 'a0' && !failed) {
        failed = true;
        c.nack(d, 'once');
      } else c.ack(d);
    });
    await waitFor('all done', () => seen.length === 4);
    expect(seen.indexOf('b0#1')).toBeLessThan(seen.indexOf('a0#2'));
    expect(seen.filter(s => s.startsWith('a'))).toEqual(['a0#1', 'a0#2', 'a1#1']);
  });

  test('a consumer whose stream and group vanish (Redis lost them) makes them again and goes on', async () => {
    const pub = await bus.connection();
    const conn = await bus.connection();
    const got: string[] = [];
    const c = await conn.consume(spec('fragile', 'g'), d => {
      got.push(text(d));
      c.ack(d);
    });
    await pub.produce('fragile', [{ value: buf('before') }]);
    await waitFor('before', () => got.length === 1);
    await admin.del(`${prefix}:{t:fragile}:log`);
    await sleep(50);
    await pub.produce('fragile', [{ value: buf('after') }]);
    await waitFor('after', () => got.length === 2, 8000);
    expect(got).toEqual(['before', 'after']);
  });

  test('consume validates its spec with the embedded broker\'s rules and codes', async () => {
    const conn = await bus.connection();
    const cases: Array<[ReturnType<typeof spec>, string, string]> = [
      [spec('bad topic', 'g'), 'INVALID_TOPIC', 'bad topic'],
      [spec('t', ''), 'INVALID_OPTION', "'group'"],
      [spec('t', 'g', { concurrency: 0 }), 'INVALID_OPTION', "'concurrency'"],
      [spec('t', 'g', { from: { offset: -1 } }), 'INVALID_OPTION', "'from'"],
      [spec('t', 'g', { deadLetter: 't' }), 'INVALID_OPTION', "'deadLetter'"],
    ];
    for (const [s, code, names] of cases) {
      const e = (await conn.consume(s, () => undefined).catch(err => err)) as { code: string; message: string };
      expect({ code: e.code, names: e.message.includes(names) }).toEqual({ code, names: true });
    }
  });
});
