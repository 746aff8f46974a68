/**
 * SQLite-ioerr-style disk faults through the broker, every N (not stepped as in CI):
 * for each kind (write, fdatasync, open, rename) and errno, fail the Nth operation
 * for N = 1, 2, … until a run sees no fault. See test/reliability/disk-faults.ts.
 *   npx tsc -p tsconfig.json && node .build/bench/reliability-disk-faults.js [messages=40]
 */
import { diskFaultCase } from '../test/reliability/disk-faults.js';
import type { FaultKind } from '../test/reliability/fault-io.js';

const messages = Number(process.argv[2] ?? 40);
const plan: [FaultKind, string[]][] = [
  ['write', ['ENOSPC', 'EIO', 'EDQUOT']],
  ['fdatasync', ['EIO', 'ENOSPC']],
  ['open', ['ENOSPC', 'EMFILE', 'EIO']],
  ['rename', ['EIO', 'ENOSPC']],
];
const t0 = performance.now();
const rows: Record<string, unknown>[] = [];
let failed = false;
for (const [kind, codes] of plan) {
  for (const code of codes) {
    let runs = 0;
    let faults = 0;
    let acked = 0;
    let refused = 0;
    try {
      for (let at = 1; ; at++) {
        const r = await diskFaultCase(kind, at, code, messages);
        runs++;
        acked += r.acked;
        refused += r.failed;
        if (!r.injected) break;
        faults++;
      }
    } catch (e) {
      failed = true;
      console.error(`FAILED: ${(e as Error).message}`);
    }
    rows.push({ kind, code, runs, faultsInjected: faults, publishesAcked: acked, publishesRefused: refused });
  }
}
console.table(rows);
console.log(JSON.stringify({ cases: rows.reduce((n, r) => n + (r.runs as number), 0), seconds: Math.round((performance.now() - t0) / 100) / 10 }));
process.exit(failed ? 1 : 0);
