import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker/broker.js';
import { ConsumerGroup, type GroupHost } from '../../lib/broker/consumer-group.js';
import { BrokerStats } from '../../lib/broker/stats.js';
import type { BusConnection, ConsumeSpec, Consumer, Delivery } from '../../lib/connection/types.js';
import type { TopicConfig } from '../../lib/options.js';
import { FileStore } from '../../lib/store/file-store.js';
import type { GroupOffset, LogStore, TopicLog, TopicLogConfig } from '../../lib/store/types.js';
import { built, killProcess, spawnNode } from '../wire/children.js';
import { MemoryLogger, openBroker, spec, text, until } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'logbus-delivery-counts-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => join(root, String(n++));

/**
 * A real file store whose checkpoint writes stop at crash(): what is on disk
 * afterwards is exactly what a broker killed at that moment leaves behind
 * (appended records are kept; group positions written later are not).
 */
class CrashableStore implements LogStore {
  private crashed = false;
  /** Every group-offset commit that reached the disk, in order. */
  readonly writes: GroupOffset[][] = [];
  constructor(private readonly inner: FileStore) {}
  static async open(dataDir: string): Promise<CrashableStore> {
    return new CrashableStore(await FileStore.open({ dataDir, fsync: 'never', logger: new MemoryLogger() }));
  }
  crash(): void {
    this.crashed = true;
  }
  get dataDir(): string {
    return this.inner.dataDir;
  }
  topicNames(): string[] {
    return this.inner.topicNames();
  }
  openTopic(name: string, config: TopicLogConfig): Promise<TopicLog> {
    return this.inner.openTopic(name, config);
  }
  deleteTopic(name: string): Promise<void> {
    return this.inner.deleteTopic(name);
  }
  loadTopicConfigs(): Promise<Record<string, TopicConfig>> {
    return this.inner.loadTopicConfigs();
  }
  async saveTopicConfig(name: string, config: TopicConfig): Promise<void> {
    if (!this.crashed) await this.inner.saveTopicConfig(name, config);
  }
  loadGroupOffsets(): Promise<GroupOffset[]> {
    return this.inner.loadGroupOffsets();
  }
  async commitGroupOffsets(entries: GroupOffset[]): Promise<void> {
    if (this.crashed) return;
    await this.inner.commitGroupOffsets(entries);
    this.writes.push(structuredClone(entries));
  }
  async deleteGroupOffset(topic: string, group: string): Promise<void> {
    if (!this.crashed) await this.inner.deleteGroupOffset(topic, group);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function openCrashable(dataDir: string) {
  const store = await CrashableStore.open(dataDir);
  const logger = new MemoryLogger();
  const broker = await Broker.open({ dataDir, store, fsync: 'never', retentionCheckMs: 0, logger });
  return { broker, store, c: broker.connect(), logger };
}

async function openClean(dataDir: string) {
  const { broker, logger } = await openBroker({ dataDir });
  return { broker, c: broker.connect(), logger };
}

/** Consumes with `s`, acking every delivery; the returned array fills as they come. */
async function consumeAcking(c: BusConnection, s: ConsumeSpec): Promise<Delivery[]> {
  const got: Delivery[] = [];
  const consumer: Consumer = await c.consume(s, d => {
    got.push(d);
    consumer.ack(d);
  });
  return got;
}

const DELIVERY = /^delivery (\d+) (\d+)$/;

/** Runs the poison consumer child on dataDir until its first delivery, kills it with SIGKILL, returns that delivery's count. */
async function deliverAndKill(dataDir: string, maxDeliver: number): Promise<number> {
  const child = spawnNode(built('test/broker/fixtures/poison-consumer.js'), [dataDir, String(maxDeliver)]);
  let line: string;
  try {
    line = await child.waitLine('the child to get the message', l => typeof l === 'string' && DELIVERY.test(l), 15_000);
  } finally {
    await killProcess(child.proc, 'SIGKILL');
  }
  const m = DELIVERY.exec(line)!;
  expect(Number(m[1])).toBe(0);
  return Number(m[2]);
}

describe('delivery counts survive broker restarts', () => {
  it('a message that takes the broker down on every delivery is dead-lettered after maxDeliver crashes, with x-logbus-deliveries', async () => {
    const dataDir = freshDir();
    const maxDeliver = 3;
    const poisonSpec = spec('p', 'g', { maxDeliver, ackWaitMs: 60_000, deadLetter: 'p.dlq' });
    {
      const { broker, c } = await openClean(dataDir);
      await c.produce('p', [{ value: Buffer.from('poison'), key: 'k' }]);
      await broker.close();
    }
    for (let round = 1; round <= maxDeliver; round++) {
      const { broker, store, c } = await openCrashable(dataDir);
      const got: Delivery[] = [];
      await c.consume(poisonSpec, d => void got.push(d)); // never acked: the process "dies" handling it
      await until(() => got.length === 1, `delivery in round ${round}`);
      expect([round, got[0].offset, got[0].deliveryCount]).toEqual([round, 0, round]);
      store.crash();
      await broker.close();
    }
    const { broker, c, logger } = await openClean(dataDir);
    const got = await consumeAcking(c, poisonSpec);
    const dlq = await consumeAcking(c, spec('p.dlq', 'reader'));
    await until(() => dlq.length === 1, 'the dead letter');
    expect(text(dlq[0])).toBe('poison');
    expect(dlq[0].key).toBe('k');
    expect(dlq[0].headers).toMatchObject({ 'x-logbus-deliveries': String(maxDeliver), 'x-logbus-topic': 'p', 'x-logbus-offset': '0' });
    expect(dlq[0].headers['x-logbus-error']).toContain(`${maxDeliver} deliveries`);
    // A message appended after the crash was never delivered before: it starts at 1.
    await c.produce('p', [{ value: Buffer.from('fresh'), key: 'k' }]);
    await until(() => got.length === 1, 'the fresh message');
    expect(got.map(d => [text(d), d.deliveryCount])).toEqual([['fresh', 1]]);
    expect((await c.groups('p'))[0]).toMatchObject({ committedOffset: 2, inFlight: 0 });
    expect(logger.errors).toEqual([]);
    await broker.close();
  });

  it('a message held back behind its key and delivered after the last write counts as delivered after a crash (its redelivery says 2)', async () => {
    const dataDir = freshDir();
    {
      const { broker, c } = await openClean(dataDir);
      const keyed = [['x', 'm0'], ['a', 'm1'], ['a', 'm2'], ['b', 'm3']];
      await c.produce('k', keyed.map(([key, v]) => ({ key, value: Buffer.from(v) })));
      await broker.close();
    }
    {
      const { broker, store, c } = await openCrashable(dataDir);
      const got: Delivery[] = [];
      const consumer: Consumer = await c.consume(spec('k', 'g', { concurrency: 3 }), d => void got.push(d));
      // m2 waits behind m1 (same key) while m3 goes out: below the delivered mark, not delivered.
      await until(() => got.length === 3, 'm0, m1 and m3');
      expect(got.map(text)).toEqual(['m0', 'm1', 'm3']);
      const before = store.writes.length;
      consumer.ack(got[0]);
      // The batched position write (offset 1) is taken while m2 is still undelivered.
      const positionWritten = () => store.writes.slice(before).some(w => w.some(g => g.group === 'g' && g.offset === 1));
      await until(positionWritten, 'the position after m0 written');
      consumer.ack(got[1]);
      await until(() => got.length === 4, 'm2, released by the ack of m1');
      expect([text(got[3]), got[3].deliveryCount]).toEqual(['m2', 1]);
      // Killed before the next write: the ack of m1 and the delivery of m2 are not on disk.
      store.crash();
      await broker.close();
    }
    const { broker, c, logger } = await openClean(dataDir);
    const got = await consumeAcking(c, spec('k', 'g', { concurrency: 3 }));
    await until(() => got.length === 3, 'm1, m2 and m3 again');
    expect(got.map(d => [text(d), d.deliveryCount]).sort()).toEqual([
      ['m1', 2],
      ['m2', 2],
      ['m3', 2],
    ]);
    expect(logger.errors).toEqual([]);
    await broker.close();
  });

  it('a saved count of 0 (never delivered) is written again only by a closed group, never while it may still deliver', () => {
    const host: GroupHost = {
      stats: new BrokerStats(),
      logger: new MemoryLogger(),
      deadLetter: async () => undefined,
      positionChanged: () => undefined,
      commit: async () => undefined,
    };
    const log = { name: 't', earliestOffset: 0, nextOffset: 10 } as TopicLog;
    const group = new ConsumerGroup('t', 'g', log, 0, host, { deliveredUpTo: 10, deliveries: [[3, 0], [4, 2]] });
    // While it runs, offset 3 may be delivered before the next write: leaving it out makes it count once after a crash.
    expect(group.deliveryState()).toEqual({ deliveredUpTo: 10, deliveries: [[4, 2]] });
    group.close();
    expect(group.deliveryState()).toEqual({ deliveredUpTo: 10, deliveries: [[3, 0], [4, 2]] });
  });

  it('a consumer process killed with SIGKILL on every delivery: counts 1..maxDeliver, then dead-lettered', async () => {
    const dataDir = freshDir();
    const maxDeliver = 3;
    {
      const { broker, c } = await openClean(dataDir);
      await c.produce('p', [{ value: Buffer.from('poison') }]);
      await broker.close();
    }
    const counts: number[] = [];
    for (let round = 0; round < maxDeliver; round++) counts.push(await deliverAndKill(dataDir, maxDeliver));
    expect(counts).toEqual([1, 2, 3]);
    const { broker, c } = await openClean(dataDir);
    const got: Delivery[] = [];
    await c.consume(spec('p', 'g', { maxDeliver, deadLetter: 'p.dlq' }), d => void got.push(d));
    const dlq = await consumeAcking(c, spec('p.dlq', 'reader'));
    await until(() => dlq.length === 1, 'the dead letter');
    expect([text(dlq[0]), dlq[0].headers['x-logbus-deliveries']]).toEqual(['poison', String(maxDeliver)]);
    expect(got).toEqual([]);
    await broker.close();
  }, 60_000);

  it('after a clean close, in-flight messages come back at count 2 and never-delivered ones start at 1', async () => {
    const dataDir = freshDir();
    {
      const { broker, c } = await openClean(dataDir);
      await c.produce('q', Array.from({ length: 5 }, (_, i) => ({ value: Buffer.from(`m${i}`) })));
      const got: Delivery[] = [];
      // concurrency 1: m0 and m1 are acked, m2 stays in flight, m3 and m4 are never delivered.
      const consumer: Consumer = await c.consume(spec('q', 'g', { concurrency: 1 }), d => {
        got.push(d);
        if (d.offset! < 2) consumer.ack(d);
      });
      await until(() => got.length === 3, 'three deliveries');
      expect(got.map(d => d.deliveryCount)).toEqual([1, 1, 1]);
      await broker.close();
    }
    const { broker, c } = await openClean(dataDir);
    await c.produce('q', [{ value: Buffer.from('m5') }]);
    const got = await consumeAcking(c, spec('q', 'g', { concurrency: 1 }));
    await until(() => got.length === 4, 'the rest');
    expect(got.map(d => [text(d), d.deliveryCount])).toEqual([
      ['m2', 2],
      ['m3', 1],
      ['m4', 1],
      ['m5', 1],
    ]);
    expect((await broker.stats.snapshot()).redelivered).toBe(1);
    await broker.close();
  });

  it('counts above 1 are kept exactly across a clean restart; resetGroup starts them over', async () => {
    const dataDir = freshDir();
    {
      const { broker, c } = await openClean(dataDir);
      await c.produce('r', [{ value: Buffer.from('a') }, { value: Buffer.from('b') }]);
      const got: Delivery[] = [];
      // 'a' is nacked twice (counts 1, 2) and is in flight at count 3 when the broker stops; 'b' is acked.
      const consumer: Consumer = await c.consume(spec('r', 'g', { concurrency: 2, backoffMs: [0], maxDeliver: 10 }), d => {
        got.push(d);
        if (text(d) === 'b') consumer.ack(d);
        else if (d.deliveryCount < 3) consumer.nack(d, 'not yet');
      });
      await until(() => got.some(d => text(d) === 'a' && d.deliveryCount === 3), "'a' at count 3");
      await broker.close();
    }
    {
      const { broker, c } = await openClean(dataDir);
      const got: Delivery[] = [];
      await c.consume(spec('r', 'g', { concurrency: 2 }), d => void got.push(d));
      await until(() => got.length === 2, 'both again (b is behind the committed position)');
      expect(got.map(d => [text(d), d.deliveryCount])).toEqual([
        ['a', 4],
        ['b', 2],
      ]);
      await broker.close();
    }
    const { broker, c } = await openClean(dataDir);
    await c.resetGroup('r', 'g', 'earliest');
    const got = await consumeAcking(c, spec('r', 'g', { concurrency: 2 }));
    await until(() => got.length === 2, 'both after the reset');
    expect(got.map(d => [text(d), d.deliveryCount])).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    await broker.close();
  });
});
