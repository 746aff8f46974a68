/**
 * kill -9 of a broker process under load, N rounds (test/reliability/broker-crash.ts):
 * 3 producer processes, 2 consumer groups × 2 member processes, fsync 'always'.
 *   npx tsc -p tsconfig.json && node .build/bench/reliability-broker-crash.js [rounds=100] [seed=1]
 * Prints the figures; exits 1 if any invariant broke (listing the first violations).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBrokerCrash } from '../test/reliability/broker-crash.js';

const rounds = Number(process.argv[2] ?? 100);
const seed = Number(process.argv[3] ?? 1);
const ACK_WINDOW_BOUND_MS = 1000;
const dataDir = mkdtempSync(join(tmpdir(), 'logbus-broker-crash-'));
const t0 = performance.now();
let code = 0;
try {
  const r = await runBrokerCrash({
    dataDir,
    rounds,
    seed,
    onRound: (n, f) => {
      if (n % 10 === 0) console.error(`round ${n}: ran ${f.ranMs} ms, ${f.acked} publishes acked so far`);
    },
  });
  // The at-least-once window, timed (a benchmark may assert timings, the jest test does not): group positions are
  // committed (fsynced) every 100 ms, so an ack older than 10 × that at the kill must not come back.
  if (r.maxRedeliveredAckAgeMs > ACK_WINDOW_BOUND_MS) r.violations.push(`an ack made ${r.maxRedeliveredAckAgeMs} ms before a kill was lost (bound ${ACK_WINDOW_BOUND_MS} ms)`);
  const perRound = [...r.redeliveriesPerRound].sort((a, b) => a - b);
  const q = (p: number) => perRound[Math.min(perRound.length - 1, Math.floor(p * perRound.length))];
  console.log(
    JSON.stringify({
      rounds: r.rounds,
      seconds: Math.round((performance.now() - t0) / 100) / 10,
      publishesAcked: r.publishesAcked,
      publishesFailed: r.publishesFailed,
      failedButStored: r.failedButStored,
      logRecords: r.logRecords,
      deliveries: r.deliveries,
      redeliveries: r.redeliveries,
      redeliveriesCountedOnce: r.redeliveriesCountedOnce,
      redeliveriesPerRound: { min: perRound[0], median: q(0.5), p90: q(0.9), max: perRound.at(-1) },
      maxRedeliveredAckAgeMs: r.maxRedeliveredAckAgeMs,
      violations: r.violations.length,
    }),
  );
  for (const v of r.violations) console.log(`VIOLATION ${v}`);
  for (const n of r.notes) console.log(`note ${n}`);
  if (r.violations.length) code = 1;
} catch (e) {
  console.error(`FAILED: ${(e as Error).stack}`);
  code = 1;
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);
