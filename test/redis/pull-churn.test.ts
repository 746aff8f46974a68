/**
 * Pull under churn: members of one group come and go (clean closes) while
 * handlers fail at random. Every message must end up processed, same-key
 * messages must finish in publish order and never run two at once.
 * The random choices are seeded (CHURN_SEED) to help replay a failure; timing still varies.
 */
import type { Redis } from 'ioredis';
import type { RedisConnection } from '../../lib/connection/redis/index.js';
import type { Consumer } from '../../lib/connection/types.js';
import { Bus, deleteKeys, requireRedis, sleep, spec, text, uniquePrefix, waitFor } from './helpers.js';

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

/** mulberry32: small seeded PRNG */
function rng(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('members joining and leaving, handlers failing: every message done, key order kept', async () => {
  const seed = Number(process.env.CHURN_SEED ?? 20261127);
  const random = rng(seed);
  const N = 300;
  const keys = ['a', 'b', 'c', 'd', 'e'];
  const pub = await bus.connection();
  const done = new Set<number>();
  const running = new Set<string>();
  const finishedByKey: Record<string, number[]> = Object.fromEntries(keys.map(k => [k, []]));
  const problems: string[] = [];

  interface Member {
    conn: RedisConnection;
    consumer: Consumer;
    inFlight: { n: number };
  }
  async function join(): Promise<Member> {
    const conn = await bus.connection();
    const inFlight = { n: 0 };
    const consumer: Consumer = await conn.consume(
      spec('churn', 'g', { concurrency: 4, ackWaitMs: 2000, maxDeliver: 1000, backoffMs: [5, 10] }),
      d => {
        inFlight.n++;
        const n = Number(text(d));
        if (d.key !== undefined) {
          if (running.has(d.key)) problems.push(`key ${d.key} ran twice at once (offset ${d.offset})`);
          running.add(d.key);
        }
        const fail = random() < 0.15;
        setTimeout(
          () => {
            inFlight.n--;
            if (d.key !== undefined) running.delete(d.key);
            if (fail) {
              consumer.nack(d, 'random failure');
              return;
            }
            if (d.key !== undefined && !done.has(n)) finishedByKey[d.key].push(n);
            done.add(n);
            consumer.ack(d);
          },
          Math.floor(random() * 4),
        );
      },
    );
    return { conn, consumer, inFlight };
  }

  const members: Member[] = [await join(), await join(), await join()];
  const produced = (async () => {
    for (let i = 0; i < N; i += 10) {
      await pub.produce(
        'churn',
        Array.from({ length: 10 }, (_, j) => ({ value: Buffer.from(String(i + j)), key: (i + j) % 4 === 3 ? undefined : keys[(i + j) % keys.length] })),
      );
      await sleep(5);
    }
  })();
  // churn: close a random member the way LogBusServer does (pause, let handlers finish, close)
  // and start a new one; what it still holds (backoff, waiting for a key) goes to the others
  for (let round = 0; round < 6; round++) {
    await sleep(60);
    const victim = members.splice(Math.floor(random() * members.length), 1)[0];
    victim.consumer.pause();
    await waitFor('handlers to finish', () => victim.inFlight.n === 0);
    await victim.consumer.close();
    members.push(await join());
  }
  await produced;
  await waitFor('every message processed', () => done.size === N, 30_000);
  await waitFor('group caught up', async () => (await pub.groups('churn'))[0]?.lag === 0, 10_000);

  expect(problems).toEqual([]);
  for (const k of keys) {
    const expected = Array.from({ length: N }, (_, i) => i).filter(i => i % 4 !== 3 && keys[i % keys.length] === k);
    expect({ key: k, order: finishedByKey[k] }).toEqual({ key: k, order: expected });
  }
}, 60_000);
