/**
 * Issue 5 scale targets, on the embedded broker in this one process:
 *  1. publish → push CPU cost per message with 10 topics and 3 subscriptions
 *     vs 10,000 topics (messages spread over all of them) and 1,000 push
 *     patterns (exact, `*`, `>`; most match nothing, a few match). Both cases
 *     also carry the catch-all `app.>` subscriber, so each message has ~1.1
 *     deliveries in both. CPU = process.cpuUsage() over the timed phase.
 *  2. 100 consumer groups on one topic, each receiving every one of N messages.
 *  3. open file descriptors with 10,000 durable topics on a temp dir.
 *
 *   npx tsc -p tsconfig.json && node .build/bench/scale.js [--n 200000] [--reps 3] [--groups-n 20000]
 *       [--durable true|false] [--sections push,groups,fds] [--store memory|file]  (the push phase; file = temp dir with fsync never) [--window 1000] (produce calls in flight)
 *       [--fd-topics 10000] (durable topics of the fds section)
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Broker } from '../lib/broker/broker.js';
import type { Consumer, Delivery, OutgoingMessage, Subscription } from '../lib/connection/types.js';
import type { TopicConfig } from '../lib/options.js';
import { arg, openFds, produceAll, publishSingles } from './common.js';

const N = Number(arg('n', '200000'));
const REPS = Number(arg('reps', '3'));
const GROUPS_N = Number(arg('groups-n', '20000'));
const STORE = arg('store', 'memory');
const WINDOW = Number(arg('window', '1000'));
const DURABLE = arg('durable', 'true') !== 'false';
const SECTIONS = arg('sections', 'push,groups,fds').split(',');
const quiet = { warn: (m: string) => console.error(`warn: ${m}`), error: (m: string) => console.error(`error: ${m}`) };
const payload = Buffer.alloc(100, 'x');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

const temps: string[] = [];
function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `logbus-bench-scale-${tag}-`));
  temps.push(d);
  return d;
}

function openBroker(store: string): Promise<Broker> {
  // --durable false: the push topics have no log at all, leaving the dispatch path alone.
  const topics: Record<string, TopicConfig> = DURABLE ? {} : { 'app.>': { durable: false } };
  return Broker.open({ dataDir: store === 'file' ? tempDir('push') : ':memory:', fsync: 'never', topics, retentionCheckMs: 0, logger: quiet });
}

interface PushCase {
  label: string;
  topics: string[];
  patterns: string[];
}

/** 10 topics app.0.0 … app.9.0; app.> (all), app.0.0 (exact, 10%), app.*.1 (none). */
function smallCase(): PushCase {
  const topics = Array.from({ length: 10 }, (_, a) => `app.${a}.0`);
  return { label: '10 topics, 3 subscriptions', topics, patterns: ['app.>', 'app.0.0', 'app.*.1'] };
}

/**
 * 10,000 topics app.<a>.<b> (a, b < 100) and 1,000 patterns: app.> (all), plus
 * 400 exact (400 of the topics: 4% of messages), 10 `app.<a>.>` (10%),
 * 290 `*` patterns matching nothing (app.*.z<j>, svc<j>.*) and 299 `>`
 * patterns matching nothing (other<j>.>, app.<a>.q<j>.>).
 */
function largeCase(): PushCase {
  const topics: string[] = [];
  for (let a = 0; a < 100; a++) for (let b = 0; b < 100; b++) topics.push(`app.${a}.${b}`);
  // Spread consecutive messages over different branches of the trie.
  for (let i = topics.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [topics[i], topics[j]] = [topics[j], topics[i]];
  }
  const patterns = ['app.>'];
  for (let k = 0; k < 10_000; k += 25) patterns.push(`app.${Math.floor(k / 100)}.${k % 100}`);
  for (let a = 0; a < 10; a++) patterns.push(`app.${a}.>`);
  for (let j = 0; j < 145; j++) patterns.push(`app.*.z${j}`, `svc${j}.*`);
  for (let j = 0; j < 150; j++) patterns.push(`other${j}.>`);
  for (let j = 0; j < 149; j++) patterns.push(`app.${j % 100}.q${j}.>`);
  return { label: '10,000 topics, 1,000 patterns', topics, patterns: [...new Set(patterns)] };
}

interface PushResult {
  cpuUsPerMsg: number;
  wallMsgsPerSec: number;
  deliveriesPerMsg: number;
}

async function runPush(pc: PushCase, n = N): Promise<PushResult> {
  const b = await openBroker(STORE);
  try {
    const pub = b.connect();
    const sub = b.connect();
    let delivered = 0;
    const subs: Subscription[] = [];
    for (const p of pc.patterns) {
      const s: Subscription = await sub.subscribe({ pattern: p }, d => {
        delivered++;
        s.done(d);
      });
      subs.push(s);
    }
    // Warm-up: every topic exists (its log opened) before the timed phase, and the JIT has run.
    await publishSingles(pub, pc.topics, Math.max(pc.topics.length, 20_000), 1000, payload);
    await new Promise(r => setImmediate(r));
    delivered = 0;
    global.gc?.();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await publishSingles(pub, pc.topics, n, WINDOW, payload);
    // deliveries of the last batch run in a microtask after its produce resolved
    await new Promise(r => setImmediate(r));
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    await pub.close();
    await sub.close();
    return { cpuUsPerMsg: (cpu.user + cpu.system) / n, wallMsgsPerSec: (n / ms) * 1000, deliveriesPerMsg: delivered / n };
  } finally {
    await b.close();
  }
}

async function pushScale(): Promise<Record<string, unknown>> {
  const small = smallCase();
  const large = largeCase();
  // Diagnostics: which of the two (topics, patterns) costs what.
  const manyTopics: PushCase = { label: '(diagnostic) 10,000 topics, 3 subscriptions', topics: large.topics, patterns: ['app.>', 'app.0.0', 'app.*.1'] };
  const manyPatterns: PushCase = { label: '(diagnostic) 10 topics, the 1,000 patterns', topics: small.topics, patterns: large.patterns };
  const cases = [small, large, manyTopics, manyPatterns];
  const runs: PushResult[][] = cases.map(() => []);
  // One discarded round first (JIT), then REPS rounds, each starting with another case.
  for (const pc of cases) await runPush(pc, Math.max(20_000, N >> 2));
  for (let i = 0; i < REPS; i++) {
    for (let k = 0; k < cases.length; k++) {
      const c = (i + k) % cases.length;
      runs[c].push(await runPush(cases[c]));
    }
    console.error(`push rep ${i + 1}: ${cases.map((pc, c) => `${pc.label} ${runs[c][i].cpuUsPerMsg.toFixed(2)}`).join(', ')} µs/msg`);
  }
  const [rs, rl, rt, rp] = runs;
  const s = median(rs.map(r => r.cpuUsPerMsg));
  const l = median(rl.map(r => r.cpuUsPerMsg));
  const ratio = l / s;
  const wallRatio = median(rs.map(r => r.wallMsgsPerSec)) / median(rl.map(r => r.wallMsgsPerSec));
  console.log(`\n### publish → push cost (${!DURABLE ? 'non-durable topics' : STORE === 'file' ? 'durable topics, temp dir, fsync never' : "durable topics, ':memory:' store"}, ${fmt(N)} × 100 B single-message produce, ${WINDOW} in flight, median of ${REPS})\n`);
  console.log('| case | CPU µs/msg | msgs/s (wall) | deliveries/msg |\n|---|---|---|---|');
  for (const [pc, r] of [
    [small, rs],
    [large, rl],
    [manyTopics, rt],
    [manyPatterns, rp],
  ] as const) {
    console.log(
      `| ${pc.label} | ${median(r.map(x => x.cpuUsPerMsg)).toFixed(2)} | ${fmt(median(r.map(x => x.wallMsgsPerSec)))} | ${median(r.map(x => x.deliveriesPerMsg)).toFixed(3)} |`,
    );
  }
  console.log(`| ratio large / small | ${ratio.toFixed(2)}x CPU | ${wallRatio.toFixed(2)}x wall | target ≤ 2x: ${ratio <= 2 ? 'met' : 'MISSED'} |`);
  return {
    store: STORE,
    durable: DURABLE,
    window: WINDOW,
    n: N,
    reps: REPS,
    smallCpuUsPerMsg: +s.toFixed(3),
    largeCpuUsPerMsg: +l.toFixed(3),
    cpuRatio: +ratio.toFixed(3),
    wallRatio: +wallRatio.toFixed(3),
    smallRuns: rs.map(r => +r.cpuUsPerMsg.toFixed(3)),
    largeRuns: rl.map(r => +r.cpuUsPerMsg.toFixed(3)),
    manyTopicsOnlyCpuUsPerMsg: +median(rt.map(r => r.cpuUsPerMsg)).toFixed(3),
    manyPatternsOnlyCpuUsPerMsg: +median(rp.map(r => r.cpuUsPerMsg)).toFixed(3),
    largePatterns: large.patterns.length,
    largeTopics: large.topics.length,
    smallDeliveriesPerMsg: +median(rs.map(r => r.deliveriesPerMsg)).toFixed(3),
    largeDeliveriesPerMsg: +median(rl.map(r => r.deliveriesPerMsg)).toFixed(3),
  };
}

async function hundredGroups(): Promise<Record<string, unknown>> {
  const G = 100;
  const b = await Broker.open({ dataDir: tempDir('groups'), fsync: 'never', retentionCheckMs: 0, logger: quiet });
  try {
    const pub = b.connect();
    const con = b.connect();
    const counts = new Array<number>(G).fill(0);
    const seen = Array.from({ length: G }, () => new Uint8Array(GROUPS_N));
    let finished = 0;
    let allDone!: () => void;
    const done = new Promise<void>(r => (allDone = r));
    const consumers: Consumer[] = [];
    for (let g = 0; g < G; g++) {
      const c: Consumer = await con.consume(
        { topic: 'scale.groups', group: `g${g}`, from: 'earliest', concurrency: 64, ackWaitMs: 60_000, maxDeliver: 5, backoffMs: [1000], deadLetter: false },
        (d: Delivery) => {
          if (!seen[g][d.offset!]++) counts[g]++;
          queueMicrotask(() => c.ack(d));
          if (counts[g] === GROUPS_N) {
            counts[g]++; // count once
            if (++finished === G) allDone();
          }
        },
      );
      consumers.push(c);
    }
    await new Promise(r => setImmediate(r));
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const batch: OutgoingMessage[] = Array.from({ length: 100 }, () => ({ value: payload }));
    await produceAll(pub, 'scale.groups', batch, GROUPS_N, 1);
    await done;
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    for (const c of consumers) await c.close();
    const infos = await pub.groups('scale.groups');
    const lags = infos.map(i => i.lag);
    const exact = seen.every(s => s.every(x => x === 1));
    const perGroupOk = counts.every(c => c === GROUPS_N + 1);
    await pub.close();
    await con.close();
    const deliveries = G * GROUPS_N;
    console.log(`\n### ${G} consumer groups on one topic (temp dir, fsync never, ${fmt(GROUPS_N)} messages, concurrency 64, ack in a microtask)\n`);
    console.log('| measure | value |\n|---|---|');
    console.log(`| every group got every message exactly once | ${perGroupOk && exact ? 'yes' : 'NO'} (${G} groups × ${fmt(GROUPS_N)}) |`);
    console.log(`| groups listed / max lag after close | ${infos.length} / ${Math.max(...lags)} |`);
    console.log(`| deliveries+acks/s | ${fmt((deliveries / ms) * 1000)} (${(ms / 1000).toFixed(1)} s) |`);
    console.log(`| CPU µs per delivery | ${((cpu.user + cpu.system) / deliveries).toFixed(2)} |`);
    return {
      groups: G,
      messages: GROUPS_N,
      everyGroupEveryMessageOnce: perGroupOk && exact,
      groupsListed: infos.length,
      maxLagAfter: Math.max(...lags),
      deliveriesPerSec: Math.round((deliveries / ms) * 1000),
      cpuUsPerDelivery: +((cpu.user + cpu.system) / deliveries).toFixed(3),
    };
  } finally {
    await b.close();
  }
}

/**
 * The fd phase runs in a child process: if the topics exhaust its fd limit,
 * this process can still count (and clean up). The child stops at checkpoints
 * until the parent has counted its fds.
 */
async function fdsChild(): Promise<void> {
  const T = Number(arg('fd-topics', '10000'));
  const checkpoint = (name: string, extra: Record<string, unknown> = {}): Promise<void> =>
    new Promise(res => {
      process.once('message', () => res());
      process.send!({ checkpoint: name, ...extra });
    });
  await checkpoint('before');
  const b = await Broker.open({ dataDir: arg('dir', ''), fsync: 'never', retentionCheckMs: 0, logger: { warn: () => undefined, error: () => undefined } });
  await checkpoint('opened');
  const pub = b.connect();
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  for (let i = 0; i < T; i++) {
    try {
      await pub.produce(`fd.t${i}`, [{ value: payload }]);
      ok++;
    } catch (e) {
      failed++;
      firstError ??= `at topic #${i}: ${(e as Error).message}`;
    }
    if ((i + 1) % 1000 === 0) await checkpoint(`topics ${i + 1}`);
  }
  await checkpoint('after', { ok, failed, firstError });
  let closeError: string | undefined;
  try {
    await pub.close();
    await b.close();
  } catch (e) {
    closeError = (e as Error).message;
  }
  await checkpoint('closed', { closeError });
  process.disconnect();
}

async function durableTopicFds(): Promise<Record<string, unknown>> {
  const T = Number(arg('fd-topics', '10000'));
  const child = fork(fileURLToPath(import.meta.url), ['--role', 'fds', '--dir', tempDir('fds'), '--fd-topics', String(T)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const counts: Record<string, number> = {};
  const at: Record<string, number> = {};
  let info: { ok?: number; failed?: number; firstError?: string; closeError?: string } = {};
  await new Promise<void>((res, rej) => {
    child.on('message', (m: { checkpoint: string; ok?: number; failed?: number; firstError?: string; closeError?: string }) => {
      counts[m.checkpoint] = openFds(child.pid!);
      at[m.checkpoint] = performance.now();
      if (m.ok !== undefined) info = { ...info, ok: m.ok, failed: m.failed, firstError: m.firstError };
      if (m.checkpoint === 'closed') info.closeError = m.closeError;
      child.send('go');
    });
    child.once('exit', code => (code === 0 ? res() : rej(new Error(`fd child exited with ${code}`))));
  });
  const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const limit = m ? Number(m[1]) : NaN;
  const perTopic = (counts['topics 1000'] - counts.opened) / 1000;
  const ok = info.ok ?? 0;
  console.log(`\n### open file descriptors, ${fmt(T)} durable topics (temp dir, fsync never, one message each; broker in a child process)\n`);
  console.log('| measure | value |\n|---|---|');
  console.log(`| fds before / broker open / 1,000 topics / after ${fmt(T)} topics / after close | ${counts.before} / ${counts.opened} / ${counts['topics 1000']} / ${counts.after} / ${counts.closed} |`);
  console.log(`| fds per durable topic (first 1,000; the store caps segment files at 1,024) | ${perTopic.toFixed(2)} |`);
  const secs = (from: string, to: string): string => ((at[to] - at[from]) / 1000).toFixed(1);
  console.log(`| seconds: open + 1 publish each / close | ${secs('opened', 'after')} / ${secs('after', 'closed')} |`);
  console.log(`| topics created / failed | ${ok} / ${info.failed ?? 0}${info.firstError ? ` (first failure: ${info.firstError})` : ''} |`);
  console.log(`| close | ${info.closeError ? `failed: ${info.closeError}` : 'ok'} |`);
  console.log(`| Max open files (soft) | ${limit} |`);
  return { topics: T, fdCounts: counts, seconds: { publish: +secs('opened', 'after'), close: +secs('after', 'closed') }, fdsPerTopic: +perTopic.toFixed(2), created: ok, failed: info.failed ?? 0, firstError: info.firstError, closeError: info.closeError, fdLimit: limit };
}

async function main(): Promise<void> {
  console.log(`scale bench — node ${process.version}, embedded broker, one process`);
  try {
    let push: Record<string, unknown> | undefined;
    try {
      if (SECTIONS.includes('push')) push = await pushScale();
    } catch (e) {
      // --store file: 10,000 durable topics, whose segment files the store caps at 1,024 fds (lib/store/fd-pool.ts).
      console.log(`\n### publish → push cost: FAILED (${(e as Error).message})\n`);
      push = { store: STORE, error: (e as Error).message };
    }
    const groups = SECTIONS.includes('groups') ? await hundredGroups() : undefined;
    const fds = SECTIONS.includes('fds') ? await durableTopicFds() : undefined;
    console.log('BENCH_JSON ' + JSON.stringify({ bench: 'scale', push, groups, fds }));
  } finally {
    for (const d of temps) rmSync(d, { recursive: true, force: true });
  }
}

(arg('role', '') === 'fds' ? fdsChild() : main()).catch(e => {
  console.error(e);
  process.exitCode = 1;
});
