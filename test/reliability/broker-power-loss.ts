import { Broker } from '../../lib/broker/broker.js';
import type { Consumer, Delivery } from '../../lib/connection/types.js';
import { FileStore } from '../../lib/store/file-store.js';
import { SimDisk, prng } from './sim-disk.js';

/**
 * Power loss under the broker: a producer and a consumer group on a Broker
 * whose store is on a SimDisk (fsync 'always'); the power fails at a random
 * mutating I/O operation; the broker is reopened on what survived. Checked
 * after every recovery:
 *  - every publish whose produce() resolved is there, exact, at its offset;
 *    offsets are contiguous and every record is one that was published there;
 *  - the group's committed position never passes a message the consumer did
 *    not ack (so nothing is skipped: at-least-once), and it is never past the end.
 */

export interface BrokerRoundStats {
  losses: number;
  publishesAcked: number;
  consumerAcks: number;
  redelivered: number;
}

const quiet = { log() {}, warn() {}, error() {} };
const topics = { t: { segmentBytes: 4096 } };

export async function brokerPowerLossRound(seed: number, dataDir: string, cycles: number): Promise<BrokerRoundStats> {
  const rng = prng(seed);
  const disk = new SimDisk(rng);
  disk.mkdirDurable(dataDir);
  const stats: BrokerRoundStats = { losses: 0, publishesAcked: 0, consumerAcks: 0, redelivered: 0 };
  /** Offset → value of acknowledged publishes. */
  const expected = new Map<number, string>();
  /** Every value ever published, by its counter. */
  const published = new Map<number, string>();
  const acked = new Set<number>();
  const consumed = new Set<number>();
  let counter = 0;
  const fail = (cycle: number, msg: string): never => {
    throw new Error(`broker round seed ${seed}, cycle ${cycle}: ${msg}`);
  };
  const firstUnconsumed = () => {
    let o = 0;
    while (consumed.has(o)) o++;
    return o;
  };

  for (let cycle = 0; cycle <= cycles; cycle++) {
    const last = cycle === cycles;
    let lost = false;
    let ops = 0;
    const crashAt = last ? Infinity : 1 + Math.floor(rng() * 250);
    disk.onOp = () => {
      if (!lost && ++ops >= crashAt) {
        lost = true;
        disk.crash();
      }
    };
    let broker: Broker | undefined;
    try {
      const store = await FileStore.open({ dataDir, fsync: 'always', io: disk.io(), logger: quiet });
      broker = await Broker.open({ dataDir, store, topics, retentionCheckMs: 0, logger: quiet }).catch(async e => {
        await store.close().catch(() => {});
        throw e;
      });
      const c = broker.connect();
      // ---- verify
      const records = await c.read('t', 'earliest', 100_000);
      const next = records.length;
      let prev = -1;
      records.forEach((r, i) => {
        if (r.offset !== i) fail(cycle, `offset ${r.offset} at position ${i}`);
        const v = r.value.toString();
        const n = Number(/^v(\d+):/.exec(v)?.[1] ?? NaN);
        // A publish whose produce() never resolved may be there; then it is whole, and in publish order.
        if (published.get(n) !== v) fail(cycle, `record ${i} was never published`);
        if (n <= prev) fail(cycle, `record ${i} out of publish order`);
        if (expected.has(i) && expected.get(i) !== v) fail(cycle, `record ${i} is not the acknowledged publish at that offset`);
        prev = n;
      });
      for (const o of acked) if (o >= next) fail(cycle, `acknowledged publish at ${o} lost (log ends at ${next})`);
      for (const o of consumed) if (o >= next) fail(cycle, `consumed offset ${o} no longer in the log`);
      const g = (await c.groups('t')).find(x => x.group === 'g');
      if (g && g.committedOffset > firstUnconsumed()) fail(cycle, `group committed ${g.committedOffset} past unacked offset ${firstUnconsumed()}`);
      if (last) {
        disk.onOp = undefined;
        await broker.close();
        break;
      }
      // ---- workload until the power fails
      let consumer: Consumer | undefined;
      const join = async () => {
        const k: Consumer = await c.consume(
          { topic: 't', group: 'g', from: 'earliest', concurrency: 3, ackWaitMs: 60_000, maxDeliver: 100, backoffMs: [0], deadLetter: false },
          (d: Delivery) => {
            if (lost) return;
            if (consumed.has(d.offset!)) stats.redelivered++;
            setImmediate(() => {
              if (lost || rng() < 0.1) return; // some stay unacked
              consumed.add(d.offset!);
              stats.consumerAcks++;
              k.ack(d);
            });
          },
        );
        return k;
      };
      consumer = await join();
      const inflight: Promise<unknown>[] = [];
      for (let step = 0; step < 200 && !lost; step++) {
        const r = rng();
        if (r < 0.6) {
          const n = 1 + Math.floor(rng() * 4);
          const values = Array.from({ length: n }, () => {
            const k = counter++;
            const v = `v${k}:${'x'.repeat(Math.floor(rng() * 300))}`;
            published.set(k, v);
            return v;
          });
          const p = c.produce('t', values.map(v => ({ value: Buffer.from(v), key: `k${Math.floor(rng() * 3)}` })));
          inflight.push(
            p.then(
              res => {
                if (lost) return;
                res.forEach((x, i) => {
                  expected.set(x.offset!, values[i]);
                  acked.add(x.offset!);
                });
                if (!lost) stats.publishesAcked++;
              },
              () => {},
            ),
          );
        } else if (r < 0.65 && consumer) {
          const k = consumer;
          consumer = undefined;
          inflight.push(k.close().then(async () => void (consumer = lost ? undefined : await join()), () => {}));
        } else if (r < 0.75) {
          await new Promise(res => setTimeout(res, 1 + Math.floor(rng() * 3)));
        } else {
          await new Promise(res => setImmediate(res));
        }
      }
      if (!lost) {
        lost = true;
        disk.crash();
      }
      await Promise.allSettled(inflight);
    } catch (e) {
      if (!lost || (e as Error).message.startsWith('broker round')) throw e;
    }
    stats.losses++;
    await broker?.close().catch(() => {});
  }
  return stats;
}
