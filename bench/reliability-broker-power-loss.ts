/**
 * Power-loss rounds under the broker (test/reliability/broker-power-loss.ts): producer and
 * consumer group on a Broker whose store is on the simulated disk, fsync 'always'.
 *   npx tsc -p tsconfig.json && node .build/bench/reliability-broker-power-loss.js [rounds=100] [cycles=20] [firstSeed=1]
 * Prints the totals; exits 1 on the first broken invariant (with its seed, to replay).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brokerPowerLossRound } from '../test/reliability/broker-power-loss.js';

const rounds = Number(process.argv[2] ?? 100);
const cycles = Number(process.argv[3] ?? 20);
const firstSeed = Number(process.argv[4] ?? 1);
const root = mkdtempSync(join(tmpdir(), 'logbus-broker-power-'));
const totals = { rounds: 0, losses: 0, publishesAcked: 0, consumerAcks: 0, redelivered: 0 };
const t0 = performance.now();
let failed = false;
try {
  for (let seed = firstSeed; seed < firstSeed + rounds; seed++) {
    const dir = join(root, String(seed));
    mkdirSync(dir);
    const s = await brokerPowerLossRound(seed, dir, cycles);
    totals.rounds++;
    totals.losses += s.losses;
    totals.publishesAcked += s.publishesAcked;
    totals.consumerAcks += s.consumerAcks;
    totals.redelivered += s.redelivered;
    rmSync(dir, { recursive: true, force: true });
  }
} catch (e) {
  failed = true;
  console.error(`FAILED after ${totals.rounds} good rounds: ${(e as Error).message}`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
console.log(JSON.stringify({ ...totals, cyclesPerRound: cycles, seconds: Math.round((performance.now() - t0) / 100) / 10 }));
process.exit(failed ? 1 : 0);
