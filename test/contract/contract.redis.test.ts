import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, type INestMicroservice } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import type { Redis } from 'ioredis';
import { keyBucket } from '../../lib/connection/redis/keys.js';
import { Consume, LogBusClient } from '../../lib/index.js';
import { eventually, sleep, startApp, uniqueTopic } from '../e2e/helpers.js';
import { deleteKeys, REDIS_URL, requireRedis, uniquePrefix } from '../redis/helpers.js';
import { describeContract } from './contract.js';

/**
 * The Redis at 127.0.0.1:6379 (REDIS_URL overrides), under a prefix of this
 * file's own, whose keys are deleted at the end. No Redis: every test FAILS,
 * none is skipped.
 */
describeContract('redis://', async () => {
  const admin = await requireRedis();
  const prefix = uniquePrefix();
  return {
    options: { url: REDIS_URL, prefix },
    // documented: the driver stamps messages with Redis server time
    async brokerNow() {
      const [seconds, micros] = await admin.time();
      return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    },
    // documented: a queue-group join/leave is announced on pub/sub; until every member
    // has seen it a message may reach two members or none
    queueMembershipSettleMs: 300,
    // the state is in Redis: new connections on the same prefix are the restart
    restartBroker: async () => undefined,
    async teardown() {
      await deleteKeys(admin, prefix);
      admin.disconnect();
    },
  };
});

/** Where lib/connection/redis/index.ts documents a difference from the embedded broker. */
describe('documented Redis differences', () => {
  let admin: Redis;
  const prefix = uniquePrefix();
  const options = { url: REDIS_URL, prefix };
  let client: LogBusClient;
  beforeAll(async () => {
    admin = await requireRedis();
    client = new LogBusClient(options);
    await client.connect();
  });
  afterAll(async () => {
    await client?.close();
    if (admin) {
      await deleteKeys(admin, prefix);
      admin.disconnect();
    }
  });

  it('same-key order holds per key bucket: two keys in one bucket are serialized together, in publish order', async () => {
    // two different keys that share one of the 4096 buckets
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const k = `key-${i}`;
      const other = seen.get(keyBucket(k));
      if (other !== undefined) pair = [other, k];
      else seen.set(keyBucket(k), k);
    }
    const topic = uniqueTopic('bucket');
    const order: number[] = [];
    let inFlight = 0;
    let overlaps = 0;
    @Controller()
    class Bucketed {
      @Consume(topic, { group: 'b', concurrency: 4 })
      async on(@Payload() d: { n: number }) {
        if (inFlight > 0) overlaps++;
        inFlight++;
        order.push(d.n);
        await sleep(2);
        inFlight--;
      }
    }
    const app: INestMicroservice = await startApp({ controllers: [Bucketed] }, options);
    try {
      await client.produceBatch(topic, Array.from({ length: 20 }, (_, n) => ({ data: { n }, key: pair![n % 2] })));
      await eventually('20 messages', () => order.length === 20);
      // the embedded broker would run the two keys side by side; on Redis they share a chain
      expect(overlaps).toBe(0);
      expect(order).toEqual(Array.from({ length: 20 }, (_, n) => n));
    } finally {
      await app.close();
    }
  });
});
