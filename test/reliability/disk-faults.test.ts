import { describe, expect, it } from '@jest/globals';
import { diskFaultCase } from './disk-faults.js';
import type { FaultKind } from './fault-io.js';

/** SQLite's ioerr loop: fail the Nth operation for N = 1, 2, … until a run sees no fault. */
async function loop(kind: FaultKind, code: string, step: number): Promise<{ runs: number; withFault: number; publishFailures: number }> {
  let runs = 0;
  let withFault = 0;
  let publishFailures = 0;
  for (let at = 1; at < 500; at += step) {
    const r = await diskFaultCase(kind, at, code);
    runs++;
    if (!r.injected) break;
    withFault++;
    publishFailures += r.failed;
  }
  return { runs, withFault, publishFailures };
}

describe('disk faults through the broker (fsync always)', () => {
  for (const [kind, code, step] of [
    ['write', 'ENOSPC', 4],
    ['fdatasync', 'EIO', 4],
    ['open', 'EMFILE', 1],
    ['open', 'ENOSPC', 2],
    ['rename', 'EIO', 3],
  ] as [FaultKind, string, number][]) {
    it(`${code} at the Nth ${kind}: STORAGE, nothing acked after the gap, reads/push/other topics go on, whole after reopen`, async () => {
      const r = await loop(kind, code, step);
      // The loop must have injected faults and then run out of operations to fail.
      expect(r.withFault).toBeGreaterThan(1);
      expect(r.runs).toBe(r.withFault + 1);
      if (kind !== 'rename') expect(r.publishFailures).toBeGreaterThan(0);
      else expect(r.publishFailures).toBe(0);
    }, 60_000);
  }
});
