/**
 * Fuzzes the wire decoder with a million fast-check cases (arbitrary bytes and
 * mutated valid frames, split at random points): no throw other than
 * LogBusError('PROTOCOL'), no hang, nothing held beyond the frame limit.
 *
 *   npx tsc -p tsconfig.json && node .build/bench/fuzz-frames.js [cases] [seed]
 */
import fc from 'fast-check';
import { checkDecoder, hostileStream } from '../test/wire/frame-arbitraries.js';

const cases = Number(process.argv[2] ?? 1_000_000);
const seed = process.argv[3] === undefined ? Date.now() : Number(process.argv[3]);
const chunk = 50_000;

let done = 0;
const started = process.hrtime.bigint();
let failure: string | undefined;
while (done < cases && failure === undefined) {
  const n = Math.min(chunk, cases - done);
  const result = fc.check(
    fc.property(hostileStream, ({ chunks, limit }) => {
      const problem = checkDecoder(chunks, limit);
      if (problem) throw new Error(problem);
    }),
    { numRuns: n, seed: seed + done, endOnFailure: true },
  );
  if (result.failed) {
    failure = `seed ${seed + done}: ${result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)}\n  counterexample: ${fc.stringify(result.counterexample)}`;
    break;
  }
  done += n;
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  process.stderr.write(`\r${done.toLocaleString()} / ${cases.toLocaleString()} cases, ${Math.round(done / secs).toLocaleString()} cases/s`);
}
const secs = Number(process.hrtime.bigint() - started) / 1e9;
process.stderr.write('\n');
if (failure) {
  console.log(`FAILED after ${done.toLocaleString()} cases: ${failure}`);
  process.exitCode = 1;
} else {
  console.log(`decoder fuzz: ${done.toLocaleString()} cases, no failure, ${secs.toFixed(1)} s, ${Math.round(done / secs).toLocaleString()} cases/s (seed ${seed})`);
}
