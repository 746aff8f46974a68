/**
 * Soak: a broker process whose topic's retention deletes continuously, under
 * steady load for a fixed time; checks that nothing grows without bound.
 *
 *   npx tsc -p tsconfig.json
 *   node .build/bench/soak.js [--minutes 10] [--rate 5000] [--rpc-rate 100] [--sample-s 30] [--fsync always|interval|never]
 *
 * Load, all through the wire protocol from this process to a broker child
 * process (bench/soak-broker.ts): a producer publishing keyed ~200-byte
 * messages at a fixed rate in batches every 10 ms (at most 16 batches in
 * flight: if the broker falls behind the rate drops, and the shortfall is
 * printed); a consumer group acking every delivery; a push subscriber on the
 * same topic; RPC calls at a fixed rate to a responder on its own connection.
 * The topic: segmentBytes 256 KiB, retention maxBytes 8 MiB, checked every
 * second, so a segment is deleted every fraction of a second.
 *
 * Sampled at the start, after warm-up and every --sample-s: publish-batch
 * latency p50/p99, RPC p50/p99 (over the window since the previous sample),
 * broker RSS and open file descriptors (/proc/<pid>), segment files on disk.
 * At the end it asserts boundedness (RSS and fds within a small factor of the
 * post-warm-up sample, segments within what retention allows, p99 in the
 * second half not growing past the first half's, consumer keeping up) and
 * exits 1 naming what failed.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Delivery } from '../lib/connection/types.js';
import type { FsyncMode } from '../lib/options.js';
import { WireConnection } from '../lib/wire/client.js';
import { arg, openFds, rssMiB, startSoakBroker } from './common.js';

const minutes = Number(arg('minutes', '10'));
const rate = Number(arg('rate', '5000'));
const rpcRate = Number(arg('rpc-rate', '100'));
const sampleS = Number(arg('sample-s', '30'));
const fsync = arg('fsync', 'always') as FsyncMode;
const durationMs = minutes * 60_000;
/** Warm-up: retention has been deleting for a while, caches and pools are filled. */
const warmupMs = Math.min(60_000, durationMs / 4);

const TOPIC = 'soak.events';
const SEGMENT_BYTES = 256 * 1024;
const MAX_BYTES = 8 * 1024 * 1024;
const TICK_MS = 10;
const MAX_BATCHES_IN_FLIGHT = 16;

const dataDir = mkdtempSync(join(tmpdir(), 'logbus-soak-'));

const percentile = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function segmentFiles(): number {
  try {
    return readdirSync(join(dataDir, 'topics', TOPIC)).filter(f => f.endsWith('.log')).length;
  } catch {
    return 0;
  }
}

interface Sample {
  label: string;
  t: number;
  published: number;
  ratePerS: number;
  pubP50: number;
  pubP99: number;
  rpcP50: number;
  rpcP99: number;
  rpcCalls: number;
  rssMiB: number;
  fds: number;
  segments: number;
  topicMiB: number;
  lag: number;
  pushed: number;
  pushDropped: number;
}

const broker = await startSoakBroker({
  dataDir,
  port: 0,
  fsync,
  retentionCheckMs: 1000,
  topics: { [TOPIC]: { segmentBytes: SEGMENT_BYTES, retention: { maxBytes: MAX_BYTES } } },
});
const { port, pid: brokerPid } = broker;
const url = `logbus://127.0.0.1:${port}`;
const conn = (name: string) =>
  new WireConnection({ url, token: undefined, rpcTimeoutMs: 10_000 }, { clientName: `soak-${name}`, logger: { log: () => {}, warn: m => console.error(`[${name}] ${m}`) } });
const producer = conn('producer');
const consumerConn = conn('consumer');
const pusher = conn('push');
const responder = conn('rpc-server');
const caller = conn('rpc-client');
const all = [producer, consumerConn, pusher, responder, caller];
await Promise.all(all.map(c => c.connect()));

let consumed = 0;
const consumer = await consumerConn.consume(
  { topic: TOPIC, group: 'soak', from: 'earliest', concurrency: 256, ackWaitMs: 30_000, maxDeliver: 5, backoffMs: [100], deadLetter: false },
  (d: Delivery) => {
    consumed++;
    consumer.ack(d);
  },
);
let pushed = 0;
const sub = await pusher.subscribe({ pattern: TOPIC }, d => {
  pushed++;
  sub.done(d);
});
const rpcServer = await responder.serveRpc('soak.rpc', req => req.reply(req.value, true));

// Per-window latency samples (bounded: one window's worth, reset at each sample).
let pubLat: number[] = [];
let rpcLat: number[] = [];
let published = 0;
let failures = 0;
let inFlight = 0;
let rpcInFlight = 0;
let rpcErrors = 0;
const payloadPad = 'x'.repeat(120);
const t0 = performance.now();

const perTick = (rate * TICK_MS) / 1000;
const producerTimer = setInterval(() => {
  // owed by the clock (timers fire late), but at most a few ticks' worth per batch: catching up stays bounded
  const owed = Math.min((rate * (performance.now() - t0)) / 1000 - published, perTick * 4);
  if (inFlight >= MAX_BATCHES_IN_FLIGHT || owed < 1) return;
  const n = Math.floor(owed);
  const first = published;
  published += n;
  const batch = Array.from({ length: n }, (_, i) => ({
    key: `k${(first + i) % 64}`,
    value: Buffer.from(JSON.stringify({ n: first + i, at: Date.now(), pad: payloadPad })),
  }));
  const start = performance.now();
  inFlight++;
  producer.produce(TOPIC, batch).then(
    () => {
      inFlight--;
      pubLat.push(performance.now() - start);
    },
    e => {
      inFlight--;
      failures++;
      if (failures <= 5) console.error(`publish failed: ${(e as Error).message}`);
    },
  );
}, TICK_MS);

let rpcCalls = 0;
const rpcTimer = setInterval(() => {
  // paced by the clock like the producer, at most 10 calls per tick and 64 in flight
  let owed = Math.min((rpcRate * (performance.now() - t0)) / 1000 - rpcCalls, 10);
  while (owed >= 1 && rpcInFlight < 64) {
    owed -= 1;
    rpcInFlight++;
    rpcCalls++;
    const start = performance.now();
    caller.request('soak.rpc', Buffer.from('{"ping":1}'), {
      reply: () => {
        rpcInFlight--;
        rpcLat.push(performance.now() - start);
      },
      error: () => {
        rpcInFlight--;
        rpcErrors++;
      },
    });
  }
}, TICK_MS);

const samples: Sample[] = [];
let lastPublished = 0;
let lastT = 0;
let lastRpcCalls = 0;
async function sample(label: string): Promise<Sample> {
  const t = performance.now() - t0;
  const [topics, groups, stats] = await Promise.all([producer.topics(), producer.groups(TOPIC), pusher.stats()]);
  const info = topics.find(x => x.name === TOPIC);
  const s: Sample = {
    label,
    t: Math.round(t / 1000),
    published,
    ratePerS: Math.round(((published - lastPublished) / Math.max(1, t - lastT)) * 1000),
    pubP50: round(percentile(pubLat, 50)),
    pubP99: round(percentile(pubLat, 99)),
    rpcP50: round(percentile(rpcLat, 50)),
    rpcP99: round(percentile(rpcLat, 99)),
    rpcCalls: rpcCalls - lastRpcCalls,
    rssMiB: round(rssMiB(brokerPid)), // MiB to one decimal
    fds: openFds(brokerPid),
    segments: segmentFiles(),
    topicMiB: info ? Math.round(info.bytes / 104857.6) / 10 : 0,
    lag: groups.find(g => g.group === 'soak')?.lag ?? NaN,
    pushed,
    pushDropped: Object.values(stats.dropped).reduce((a, b) => a + b, 0),
  };
  pubLat = [];
  rpcLat = [];
  lastPublished = published;
  lastT = t;
  lastRpcCalls = rpcCalls;
  samples.push(s);
  console.error(`[soak] ${JSON.stringify(s)}`);
  return s;
}
function round(x: number): number {
  return Math.round(x * 10) / 10;
}
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

await sleep(2000);
await sample('start');
await sleep(warmupMs - 2000);
const warm = await sample('warm');
let next = warmupMs + sampleS * 1000;
while (next < durationMs) {
  await sleep(next - (performance.now() - t0));
  await sample('');
  next += sampleS * 1000;
}
await sleep(Math.max(0, durationMs - (performance.now() - t0)));
const end = await sample('end');

clearInterval(producerTimer);
clearInterval(rpcTimer);
// drain: the group catches up with everything published
const drainDeadline = Date.now() + 30_000;
while (Date.now() < drainDeadline && ((await producer.groups(TOPIC)).find(g => g.group === 'soak')?.lag ?? 1) > 0) await sleep(200);
const finalLag = (await producer.groups(TOPIC)).find(g => g.group === 'soak')?.lag ?? NaN;

await consumer.close();
await sub.unsubscribe();
await rpcServer.close();
await Promise.all(all.map(c => c.close()));
await broker.stop();
rmSync(dataDir, { recursive: true, force: true });

// ---- report
const cols: (keyof Sample)[] = ['label', 't', 'published', 'ratePerS', 'pubP50', 'pubP99', 'rpcP50', 'rpcP99', 'rpcCalls', 'rssMiB', 'fds', 'segments', 'topicMiB', 'lag', 'pushed', 'pushDropped'];
const widths = cols.map(c => Math.max(c.length, ...samples.map(s => String(s[c]).length)));
const row = (vals: string[]) => '| ' + vals.map((v, i) => v.padStart(widths[i])).join(' | ') + ' |';
console.log(`soak: ${minutes} min, target ${rate} msg/s in ${TICK_MS} ms batches, ${rpcRate} RPC/s, fsync ${fsync}, segmentBytes ${SEGMENT_BYTES}, retention maxBytes ${MAX_BYTES}, check 1 s`);
console.log('latencies in ms (publish = one batch acknowledged), RSS/fds/segments of the broker process, lag of the consumer group');
console.log(row(cols.map(String)));
console.log('|' + widths.map(w => '-'.repeat(w + 2)).join('|') + '|');
for (const s of samples) console.log(row(cols.map(c => String(s[c]))));

// p99 per window after warm-up; one noisy window (a shared box) should not decide: compare the halves' medians
const windows = samples.filter(s => s.t * 1000 >= warmupMs).map(s => s.pubP99);
const half = Math.floor(windows.length / 2);
const firstHalfP99 = percentile(windows.slice(0, half), 50);
const secondHalfP99 = percentile(windows.slice(half), 50);
const maxSegments = Math.ceil(MAX_BYTES / SEGMENT_BYTES) + 8; // retention keeps up to maxBytes, plus the active segment and a check interval of growth
const checks: [string, boolean, string][] = [
  ['RSS at end ≤ 1.5 × after warm-up', end.rssMiB <= 1.5 * warm.rssMiB, `${warm.rssMiB} → ${end.rssMiB} MiB`],
  ['open fds at end ≤ after warm-up + 8', end.fds <= warm.fds + 8, `${warm.fds} → ${end.fds}`],
  [`segments always ≤ ${maxSegments}`, samples.every(s => s.segments <= maxSegments), `max ${Math.max(...samples.map(s => s.segments))}`],
  ['publish p99 not growing: median of the second half\'s windows ≤ 2 × the first half\'s + 20 ms', !(secondHalfP99 > 2 * firstHalfP99 + 20), `${firstHalfP99} → ${secondHalfP99} ms`],
  ['no publish failed, no RPC error', failures === 0 && rpcErrors === 0, `${failures} publish failures, ${rpcErrors} RPC errors`],
  ['the consumer group kept up (lag 0 after the load stops)', finalLag === 0, `lag ${finalLag}`],
  ['achieved ≥ 90% of the target rate', published >= 0.9 * rate * (durationMs / 1000), `${published} of ${rate * (durationMs / 1000)}`],
  ['achieved ≥ 90% of the RPC rate', rpcCalls >= 0.9 * rpcRate * (durationMs / 1000), `${rpcCalls} calls of ${rpcRate * (durationMs / 1000)}`],
];
for (const [what, ok, detail] of checks) console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${detail}`);
console.log(`consumed ${consumed}, pushed ${pushed}, published ${published}`);
process.exit(checks.every(c => c[1]) ? 0 : 1);
