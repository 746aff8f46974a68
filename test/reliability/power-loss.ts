import { FileStore } from '../../lib/store/file-store.js';
import type { AppendRecord, FileTopicLog } from '../../lib/store/index.js';
import type { StoreLogger, TopicLogConfig } from '../../lib/store/types.js';
import { SimDisk, prng } from './sim-disk.js';

/**
 * Power-loss rounds against the file store on a SimDisk, fsync 'always'.
 * One round: several power cycles; each cycle opens the store (recovering
 * the previous crash), checks every invariant, then runs a random workload
 * (appends on two topics with tiny segments so they roll often, retention
 * deleting old segments, group commits) until the power fails at a random
 * mutating I/O operation — which may fall inside open/recovery, a segment
 * roll, a retention delete or a checkpoint save.
 *
 * Invariants, checked after every recovery:
 *  - every append whose `durable` resolved is present, exact bytes/key/headers/timestamp,
 *    unless retention was asked to delete records that old;
 *  - offsets from earliestOffset to nextOffset are contiguous and each record
 *    is exactly the one appended at that offset (no garbage, no unparsable record);
 *  - a group's committed offset is >= the last commit that resolved, and <= the last requested.
 */

export interface RoundStats {
  cycles: number;
  losses: number;
  lossesInOpen: number;
  appendsAcked: number;
  recordsChecked: number;
  retentionDeletes: number;
  commitsAcked: number;
  warnings: number;
}

export class InvariantError extends Error {}

const TOPICS = ['orders', 'audit'];
const MAX_AGE = 400;

interface Expected {
  key: string | undefined;
  headers: Record<string, string> | undefined;
  value: Buffer;
  ts: number;
}

interface TopicModel {
  expected: Map<number, Expected>;
  acked: Set<number>;
  /** Records older than this may have been deleted by retention. */
  cutoff: number;
}

/**
 * Small rounds roll segments every few appends; big rounds (seeds 4, 12, 20, …)
 * grow one segment past 64 index entries so entries are written mid-segment.
 */
function config(rng: () => number, big: boolean): TopicLogConfig {
  return {
    segmentBytes: big ? 4 << 20 : 200 + Math.floor(rng() * 800),
    maxMessageBytes: 1 << 20,
    retention: { maxAgeMs: MAX_AGE, maxBytes: Number.MAX_SAFE_INTEGER },
  };
}

function randomRecord(rng: () => number, tag: string, big: boolean): AppendRecord {
  const len = Math.floor(rng() * rng() * (big ? 8000 : 300));
  // Distinct bytes per record from one random seed (cheaper than one rng() per byte).
  const value = Buffer.alloc(len);
  let x = Math.floor(rng() * 0xffffffff) | 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    value[i] = x & 0xff;
  }
  const r = rng();
  return {
    key: r < 0.3 ? undefined : `k${Math.floor(rng() * 5)}`,
    headers: r < 0.6 ? undefined : { tag, 'x-n': String(Math.floor(rng() * 1e6)) },
    value,
  };
}

const yieldSome = async (n: number) => {
  for (let i = 0; i < n; i++) await Promise.resolve();
};

/**
 * With fsync 'interval' an acknowledged append may be lost (that is the mode's
 * contract), so only the other invariants are checked: contiguous, exact,
 * never garbage, never a damaged sealed segment.
 */
/**
 * Runs one seeded round of `cycles` power cycles in `dataDir` (a real, empty directory: only LOCK lives there for real).
 * `maxOpenFiles`: the store's fd cap (a small one makes segment files close and reopen all the time).
 */
export async function powerLossRound(
  seed: number,
  dataDir: string,
  cycles: number,
  fsync: 'always' | 'interval' = 'always',
  maxOpenFiles?: number,
): Promise<RoundStats> {
  const rng = prng(seed);
  const big = seed % 8 === 4;
  const disk = new SimDisk(rng);
  disk.mkdirDurable(dataDir);
  const stats: RoundStats = { cycles: 0, losses: 0, lossesInOpen: 0, appendsAcked: 0, recordsChecked: 0, retentionDeletes: 0, commitsAcked: 0, warnings: 0 };
  const models = new Map<string, TopicModel>(TOPICS.map(t => [t, { expected: new Map(), acked: new Set(), cutoff: -Infinity }]));
  let commitAcked = -1;
  let commitRequested = -1;
  let clock = 1_000_000;
  const fail = (msg: string): never => {
    throw new InvariantError(`seed ${seed}, cycle ${stats.cycles}: ${msg}`);
  };
  // Errors logged by the dying process (EIO after the loss) are expected; any other is a finding.
  let powerLost = false;
  const errors: string[] = [];
  const logger: StoreLogger = { warn: () => void stats.warnings++, error: m => void (powerLost || errors.push(m)) };

  const verify = async (store: FileStore, logs: Map<string, FileTopicLog>): Promise<void> => {
    const groups = await store.loadGroupOffsets();
    const g = groups.find(x => x.group === 'g')?.offset ?? -1;
    if (g < commitAcked && fsync === 'always') fail(`group offset went back to ${g} after commit of ${commitAcked} was acknowledged`);
    if (g > commitRequested) fail(`group offset ${g} was never committed (last requested ${commitRequested})`);
    commitRequested = commitAcked = g;
    for (const [t, m] of models) {
      const log = logs.get(t)!;
      const earliest = log.earliestOffset;
      const next = log.nextOffset;
      for (const o of fsync === 'always' ? m.acked : []) {
        if (o >= next) fail(`${t}: acknowledged offset ${o} lost (nextOffset ${next})`);
        if (o < earliest && m.expected.get(o)!.ts >= m.cutoff) fail(`${t}: acknowledged offset ${o} deleted though newer than the retention cutoff`);
      }
      let from = earliest;
      while (from < next) {
        let batch;
        try {
          batch = await log.read(from, 1 + Math.floor(rng() * 50));
        } catch (e) {
          if (powerLost) throw e;
          fail(`${t}: read from ${from} failed: ${(e as Error).message}`);
        }
        if (batch!.length === 0) fail(`${t}: read from ${from} returned nothing before nextOffset ${next}`);
        for (const r of batch!) {
          if (r.offset !== from) fail(`${t}: offset ${r.offset} where ${from} was expected`);
          const want = m.expected.get(r.offset);
          if (!want) fail(`${t}: record at ${r.offset} was never appended`);
          if (!r.value.equals(want!.value) || r.key !== want!.key || r.timestamp !== want!.ts || JSON.stringify(r.headers) !== JSON.stringify(want!.headers ?? {})) {
            fail(`${t}: record at ${r.offset} differs from what was appended: got ${r.value.length}B key ${r.key} ts ${r.timestamp} ${JSON.stringify(r.headers)}, want ${want!.value.length}B key ${want!.key} ts ${want!.ts} ${JSON.stringify(want!.headers)} equal=${r.value.equals(want!.value)}`);
          }
          stats.recordsChecked++;
          from++;
        }
      }
      // Unacknowledged appends past the recovered end are gone; their offsets will be reused.
      for (const o of m.expected.keys()) if (o >= next || o < earliest) m.expected.delete(o);
      for (const o of m.acked) if (o < earliest || o >= next) m.acked.delete(o);
    }
  };

  for (let cycle = 0; cycle <= cycles; cycle++) {
    stats.cycles = cycle;
    const last = cycle === cycles;
    // Arm the power failure at a random mutating operation (the last cycle only verifies).
    let ops = 0;
    const crashAt = last ? Infinity : 1 + Math.floor(rng() * (rng() < 0.15 ? 12 : 400));
    let lost = false;
    powerLost = false;
    disk.onOp = () => {
      if (!lost && ++ops >= crashAt) {
        lost = powerLost = true;
        disk.crash();
      }
    };
    const io = disk.io();
    let store: FileStore | undefined;
    const logs = new Map<string, FileTopicLog>();
    try {
      store = await FileStore.open({ dataDir, fsync, io, logger, fsyncIntervalMs: 1, cacheBytes: rng() < 0.5 ? 0 : 4096, maxOpenFiles });
      for (const t of TOPICS) logs.set(t, (await store.openTopic(t, config(rng, big))) as FileTopicLog);
    } catch (e) {
      if (!lost) throw e;
    }
    if (lost) {
      stats.losses++;
      stats.lossesInOpen++;
      await store?.close().catch(() => {});
      continue;
    }

    // ---- verify what survived (reads may rebuild an index: the power can fail there too)
    if (errors.length) fail(`store logged an error: ${errors[0]}`);
    try {
      await verify(store!, logs);
    } catch (e) {
      if (!lost || e instanceof InvariantError) throw e;
    }
    if (lost) {
      stats.losses++;
      await store!.close().catch(() => {});
      continue;
    }
    if (last) {
      disk.onOp = undefined;
      await store!.close();
      break;
    }

    // ---- workload until the power fails
    const inflight: Promise<unknown>[] = [];
    for (let step = 0; step < 400 && !lost; step++) {
      clock += Math.floor(rng() * 20);
      const r = rng();
      const t = TOPICS[rng() < 0.7 ? 0 : 1];
      const m = models.get(t)!;
      const log = logs.get(t)!;
      try {
        if (r < 0.7) {
          const recs = Array.from({ length: 1 + Math.floor(rng() * rng() * 6) }, () => randomRecord(rng, t, big));
          const res = log.append(recs, clock);
          recs.forEach((rec, i) => m.expected.set(res.baseOffset + i, { ...rec, ts: clock }));
          const offsets = recs.map((_, i) => res.baseOffset + i);
          inflight.push(
            res.durable.then(
              () => {
                if (!lost) {
                  for (const o of offsets) m.acked.add(o);
                  stats.appendsAcked++;
                }
              },
              () => {},
            ),
          );
        } else if (r < 0.8) {
          const cutoff = clock - MAX_AGE;
          if (cutoff > m.cutoff) m.cutoff = cutoff;
          inflight.push(log.enforceRetention(clock).then(x => void (stats.retentionDeletes += x.deletedSegments), () => {}));
        } else if (r < 0.88) {
          const v = ++commitRequested;
          inflight.push(
            store!.commitGroupOffsets([{ topic: TOPICS[0], group: 'g', offset: v }]).then(
              () => {
                if (!lost) {
                  commitAcked = Math.max(commitAcked, v);
                  stats.commitsAcked++;
                }
              },
              () => {},
            ),
          );
        } else if (r < 0.93) {
          await Promise.race([Promise.all(inflight), yieldSome(50)]);
        }
      } catch (e) {
        if (!lost) throw e;
      }
      await yieldSome(Math.floor(rng() * 4));
    }
    if (!lost) {
      // Power fails with whatever is in flight.
      lost = powerLost = true;
      disk.crash();
    }
    stats.losses++;
    await Promise.all(inflight);
    await store!.close().catch(() => {});
  }
  return stats;
}
