/**
 * Power-loss rounds on the simulated disk (test/reliability/sim-disk.ts), fsync 'always'.
 *   npx tsc -p tsconfig.json && node .build/bench/reliability-power-loss.js [rounds=200] [cycles=20] [firstSeed=1] [fsync=always|interval]
 * ('interval' checks everything but the survival of acknowledged appends, which that mode does not promise.)
 * Prints the totals; exits 1 on the first broken invariant (with its seed, to replay).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { powerLossRound } from '../test/reliability/power-loss.js';

const rounds = Number(process.argv[2] ?? 200);
const cycles = Number(process.argv[3] ?? 20);
const firstSeed = Number(process.argv[4] ?? 1);
const fsync = process.argv[5] === 'interval' ? 'interval' : 'always';
const dir = mkdtempSync(join(tmpdir(), 'logbus-power-bench-'));
const totals = { rounds: 0, losses: 0, lossesInOpen: 0, appendsAcked: 0, recordsChecked: 0, retentionDeletes: 0, commitsAcked: 0, warnings: 0 };
const t0 = performance.now();
let failed = false;
try {
  for (let seed = firstSeed; seed < firstSeed + rounds; seed++) {
    const s = await powerLossRound(seed, dir, cycles, fsync);
    totals.rounds++;
    totals.losses += s.losses;
    totals.lossesInOpen += s.lossesInOpen;
    totals.appendsAcked += s.appendsAcked;
    totals.recordsChecked += s.recordsChecked;
    totals.retentionDeletes += s.retentionDeletes;
    totals.commitsAcked += s.commitsAcked;
    totals.warnings += s.warnings;
  }
} catch (e) {
  failed = true;
  console.error(`FAILED after ${totals.rounds} good rounds: ${(e as Error).stack}`, (e as Error).cause);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify({ fsync, ...totals, cyclesPerRound: cycles, seconds: Math.round((performance.now() - t0) / 100) / 10 }));
process.exit(failed ? 1 : 0);
