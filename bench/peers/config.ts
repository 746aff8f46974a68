// Options, paths and constants of one bench run, shared by the orchestrator's modules.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url)); // .build/bench/peers
export const REPO = path.resolve(HERE, '..', '..', '..');

// ------------------------------------------------------------------ options
export const argv = process.argv.slice(2);
export const flag = (name: string) => argv.includes(`--${name}`);
export const opt = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
};
export const QUICK = flag('quick');
const num = (name: string, full: number, quick: number) => Number(opt(name, String(QUICK ? quick : full)));

export const cfg = {
  reps: num('reps', 3, 1),
  warmupEvents: num('warmup-events', 20000, 5000),
  warmupRpc: num('warmup-rpc', 5000, 1000),
  events: num('events', 200000, 20000),
  eventSizes: opt('event-sizes', '100,1024').split(',').map(Number),
  emitWindow: num('emit-window', 1000, 1000),
  rpcSize: num('rpc-size', 100, 100),
  rpcSeq: num('rpc-seq', 5000, 2000),
  rpcConc: num('rpc-conc', 100000, 10000),
  concurrency: num('concurrency', 100, 100),
  subscribers: num('subscribers', 4, 4),
  fanoutEvents: num('fanout-events', 200000, 5000),
  durableEvents: num('durable-events', 200000, 10000),
  consumers: num('consumers', 2, 2),
  consumeConcurrency: num('consume-concurrency', 64, 64),
  publishInflight: num('publish-inflight', 64, 64),
  slowEvents: num('slow-events', 200000, 10000),
  slowFactor: num('slow-factor', 1000, 1000),
  slowFill: num('slow-fill', 100000, 100000),
  jsN: num('js-n', 100000, 10000),
  idleMs: num('idle-ms', 3000, 3000),
  phaseTimeoutMs: num('phase-timeout-ms', 60000, 30000),
};
export const SCENARIOS = new Set(opt('scenarios', 'events,rpc,fanout,durable,slow').split(','));
export const selected = opt('transports', 'tcp,redis,nats,logbus,logbus-broker').split(',').filter(Boolean);
export const CPU_PROF = flag('cpu-prof');
export const startedAt = new Date().toISOString();
export const stamp = startedAt.replace(/[:.]/g, '-');
export const PROF_DIR = path.join(REPO, 'bench', 'results', `prof-${stamp}`);
export const DATA_ROOT = path.join(REPO, '.build', 'bench-data', `peers-${process.pid}`);

export const log = (...a: unknown[]) => console.error('[bench]', ...a);

/**
 * Children run from a snapshot of the build taken at start (.build/lib and
 * .build/bench/peers, same relative layout, so imports and node_modules
 * resolve alike): a rebuild of .build during the run cannot hand half-written
 * modules to processes started later. --no-snapshot runs from .build itself.
 */
export const SNAPSHOT = flag('no-snapshot') ? null : path.join(REPO, '.build', `bench-snapshot-${process.pid}`);
export const BUILD = SNAPSHOT ?? path.join(REPO, '.build');
export const CHILD_DIR = path.join(BUILD, 'bench', 'peers');
export function takeSnapshot() {
  if (!SNAPSHOT) return;
  fs.cpSync(path.join(REPO, '.build', 'lib'), path.join(SNAPSHOT, 'lib'), { recursive: true });
  fs.cpSync(HERE, CHILD_DIR, { recursive: true });
}

/**
 * Repetitions inside one scene. With --no-interleave: cfg.reps of them, back
 * to back. By default each scene measures once and the whole sweep over the
 * transports runs cfg.reps times (rounds, merged by mergeRounds), so a burst
 * of load on a shared machine hits every transport alike, not one of them.
 */
export const INTERLEAVE = !flag('no-interleave');
export const ROUNDS = INTERLEAVE ? cfg.reps : 1;
export const innerReps = INTERLEAVE ? 1 : cfg.reps;

/** What a transport's run produced (see README for the fields). */
export type Res = Record<string, any>;
