/**
 * Issue 5 memory target: the broker's RSS while N 100 B messages pass through
 * a durable topic whose consumer group lags behind by millions.
 *
 * Four processes: this orchestrator, the broker (LogBroker.start in a child),
 * a producer (WireConnection.produce batches) and a consumer (one member of
 * one group). The consumer acks slowly (--slow-rate acks/s) until the producer
 * is done, so the lag grows to ~N, then acks at once and catches up. The
 * broker's VmRSS (/proc/<pid>/status) is sampled every 500 ms.
 *
 *   npx tsc -p tsconfig.json && node .build/bench/memory.js [--n 10000000] [--fsync always|never]
 *       [--batch 500] [--inflight 8] [--slow-rate 1000] [--broker-node-args "--max-old-space-size=64"]
 *       [--timeout-s 1500] (give up if not all consumed with lag 0 by then)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Delivery, OutgoingMessage } from '../lib/connection/types.js';
import type { FsyncMode } from '../lib/options.js';
import { LogBroker } from '../lib/wire/log-broker.js';
import type { WireConnection } from '../lib/wire/client.js';
import { arg, produceAll, rssMiB, wireConn } from './common.js';

const TOPIC = 'bench.memory';
const GROUP = 'lagging';
const SELF = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;

const conn = (url: string): Promise<WireConnection> => wireConn(url, { rpcTimeoutMs: 60_000 });

// ---------------------------------------------------------------- roles (child processes)

async function brokerRole(): Promise<void> {
  const broker = await LogBroker.start({ dataDir: arg('data', ''), port: 0, fsync: arg('fsync', 'always') as FsyncMode, retentionCheckMs: 0 });
  const { host, port } = broker.address();
  process.send!({ url: `logbus://${host}:${port}` });
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'mem') process.send!({ mem: process.memoryUsage() });
    if (m.cmd === 'stop') void broker.close().then(() => process.exit(0));
  });
}

async function producerRole(): Promise<void> {
  const n = Number(arg('n', '0'));
  const batch = Number(arg('batch', '500'));
  const inflight = Number(arg('inflight', '8'));
  const c = await conn(arg('url', ''));
  const msgs: OutgoingMessage[] = Array.from({ length: batch }, () => ({ value: Buffer.alloc(100, 'x') }));
  let sent = 0;
  const t0 = performance.now();
  const progress = setInterval(() => process.send!({ produced: sent }), 1000);
  await produceAll(c, TOPIC, msgs, n, inflight, s => (sent = s));
  clearInterval(progress);
  process.send!({ produced: sent, done: true, ms: performance.now() - t0 });
  await c.close();
  process.disconnect();
}

async function consumerRole(): Promise<void> {
  const n = Number(arg('n', '0'));
  const slowRate = Number(arg('slow-rate', '1000'));
  const c = await conn(arg('url', ''));
  const seen = new Uint8Array(Math.ceil(n / 8)); // distinct offsets: every message arrives
  let distinct = 0;
  let deliveries = 0;
  let fast = false;
  const held: Delivery[] = [];
  const consumer = await c.consume(
    { topic: TOPIC, group: GROUP, from: 'earliest', concurrency: 1000, ackWaitMs: 120_000, maxDeliver: 100, backoffMs: [100], deadLetter: false },
    d => {
      deliveries++;
      const o = d.offset!;
      if (o < n && !(seen[o >> 3] & (1 << (o & 7)))) {
        seen[o >> 3] |= 1 << (o & 7);
        distinct++;
      }
      if (fast) consumer.ack(d);
      else held.push(d);
    },
  );
  // Slow phase: ack slowRate/10 held deliveries every 100 ms.
  const slow = setInterval(() => {
    for (let i = 0; i < slowRate / 10 && held.length > 0; i++) consumer.ack(held.shift()!);
  }, 100);
  const report = setInterval(() => process.send!({ distinct, deliveries }), 500);
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'catchup') {
      fast = true;
      clearInterval(slow);
      for (const d of held.splice(0)) consumer.ack(d);
    }
    if (m.cmd === 'stop') {
      clearInterval(report);
      process.send!({ distinct, deliveries, final: true });
      void consumer.close().then(() => c.close()).then(() => process.disconnect());
    }
  });
}

// ---------------------------------------------------------------- orchestrator

interface Msg {
  url?: string;
  mem?: NodeJS.MemoryUsage;
  produced?: number;
  done?: boolean;
  ms?: number;
  distinct?: number;
  deliveries?: number;
  final?: boolean;
}

function child(role: string, extra: string[], execArgv: string[] = []): ChildProcess {
  return fork(SELF, ['--role', role, ...extra], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
}

const once = <T>(p: ChildProcess, pred: (m: Msg) => T | undefined): Promise<T> =>
  new Promise((res, rej) => {
    const on = (m: Msg): void => {
      const v = pred(m);
      if (v !== undefined) {
        p.off('message', on);
        res(v);
      }
    };
    p.on('message', on);
    p.once('exit', code => rej(new Error(`child exited with ${code}`)));
  });

async function main(): Promise<void> {
  const n = Number(arg('n', '10000000'));
  const fsync = arg('fsync', 'always');
  const batch = arg('batch', '500');
  const inflight = arg('inflight', '8');
  const slowRate = arg('slow-rate', '1000');
  const brokerNodeArgs = arg('broker-node-args', '').split(' ').filter(Boolean);
  const deadlineMs = Number(arg('timeout-s', '1500')) * 1000;
  const dir = mkdtempSync(join(tmpdir(), 'logbus-bench-memory-'));
  const broker = child('broker', ['--data', dir, '--fsync', fsync], brokerNodeArgs);
  const kids: ChildProcess[] = [broker];
  try {
    const url = await once(broker, m => m.url);
    const samples: { t: number; rss: number; heapTotal: number; heap: number; external: number; ab: number; lag: number; produced: number; consumed: number }[] = [];
    let mem: NodeJS.MemoryUsage | undefined;
    broker.on('message', (m: Msg) => m.mem && (mem = m.mem));
    const admin = await conn(url);

    const consumer = child('consumer', ['--url', url, '--n', String(n), '--slow-rate', slowRate]);
    kids.push(consumer);
    let distinct = 0;
    let deliveries = 0;
    consumer.on('message', (m: Msg) => {
      if (m.distinct !== undefined) distinct = m.distinct;
      if (m.deliveries !== undefined) deliveries = m.deliveries;
    });
    await new Promise(r => setTimeout(r, 500)); // the group exists before the first message

    const t0 = performance.now();
    const producer = child('producer', ['--url', url, '--n', String(n), '--batch', batch, '--inflight', inflight]);
    kids.push(producer);
    let produced = 0;
    let produceMs = 0;
    producer.on('message', (m: Msg) => {
      if (m.produced !== undefined) produced = m.produced;
      if (m.done) produceMs = m.ms!;
    });

    let lag = NaN;
    let maxLag = 0;
    let catchupAt = 0;
    let catchupLag = 0;
    const sampler = setInterval(() => {
      broker.send({ cmd: 'mem' });
      const s = {
        t: (performance.now() - t0) / 1000,
        rss: rssMiB(broker.pid!),
        heapTotal: (mem?.heapTotal ?? NaN) / MiB,
        heap: (mem?.heapUsed ?? NaN) / MiB,
        external: (mem?.external ?? NaN) / MiB,
        ab: (mem?.arrayBuffers ?? NaN) / MiB,
        lag,
        produced,
        consumed: distinct,
      };
      samples.push(s);
      if (samples.length % 20 === 0) {
        console.error(
          `t=${s.t.toFixed(0)}s rss ${s.rss.toFixed(0)} MiB heap ${s.heap.toFixed(0)} ext ${s.external.toFixed(0)} produced ${produced} consumed ${distinct} lag ${lag}`,
        );
      }
    }, 500);
    const lagPoll = setInterval(() => {
      admin.groups(TOPIC).then(
        gs => {
          const g = gs.find(x => x.group === GROUP);
          if (g) {
            lag = g.lag;
            maxLag = Math.max(maxLag, lag);
          }
        },
        () => undefined,
      );
    }, 500);

    await once(producer, m => (m.done ? true : undefined));
    catchupAt = performance.now();
    catchupLag = n - distinct;
    consumer.send({ cmd: 'catchup' });
    while (!(distinct >= n && lag === 0)) {
      if (performance.now() - t0 > deadlineMs) throw new Error(`timed out: consumed ${distinct}/${n}, lag ${lag}`);
      await new Promise(r => setTimeout(r, 250));
    }
    const totalMs = performance.now() - t0;
    const catchupMs = performance.now() - catchupAt;
    clearInterval(sampler);
    clearInterval(lagPoll);
    const finalGroups = await admin.groups(TOPIC);
    const finalLag = finalGroups.find(x => x.group === GROUP)!.lag;
    consumer.send({ cmd: 'stop' });
    await once(consumer, m => (m.final ? true : undefined));
    await admin.close();

    const maxOf = (k: 'rss' | 'heapTotal' | 'heap' | 'external' | 'ab'): number => Math.max(...samples.map(s => s[k]).filter(x => !Number.isNaN(x)));
    const peak = samples.reduce((a, b) => (b.rss > a.rss ? b : a));
    const rows: [string, string][] = [
      ['broker', `LogBroker.start in its own process${brokerNodeArgs.length ? ` (node ${brokerNodeArgs.join(' ')})` : ''}`],
      ['messages (100 B) through durable topic', n.toLocaleString('en-US')],
      ['fsync', fsync],
      [`producer: batches of ${batch}, ${inflight} in flight`, `${Math.round(n / (produceMs / 1000)).toLocaleString('en-US')} msg/s (${(produceMs / 1000).toFixed(1)} s)`],
      ['consumer group max lag (sampled)', maxLag.toLocaleString('en-US')],
      ['not yet consumed when producer finished', catchupLag.toLocaleString('en-US')],
      ['catch-up (ack at once, concurrency 1000)', `${Math.round(catchupLag / (catchupMs / 1000)).toLocaleString('en-US')} msg/s (${(catchupMs / 1000).toFixed(1)} s)`],
      ['end to end (all consumed, lag 0)', `${Math.round(n / (totalMs / 1000)).toLocaleString('en-US')} msg/s (${(totalMs / 1000).toFixed(1)} s)`],
      ['distinct offsets consumed / deliveries', `${distinct} / ${deliveries}`],
      ['final lag', String(finalLag)],
      ['broker max RSS', `${maxOf('rss').toFixed(1)} MiB (at t=${peak.t.toFixed(0)} s, lag ${peak.lag})`],
      ['broker max heapTotal / heapUsed / external / arrayBuffers', `${maxOf('heapTotal').toFixed(1)} / ${maxOf('heap').toFixed(1)} / ${maxOf('external').toFixed(1)} / ${maxOf('ab').toFixed(1)} MiB`],
      ['broker RSS at start / at max lag / at end', `${samples[0].rss.toFixed(0)} / ${samples.reduce((a, b) => (b.lag > a.lag || Number.isNaN(a.lag) ? b : a)).rss.toFixed(0)} / ${samples[samples.length - 1].rss.toFixed(0)} MiB`],
      ['target', `RSS < 250 MB: ${maxOf('rss') * MiB < 250e6 ? 'met' : 'MISSED'}`],
    ];
    console.log(`\nbroker memory under a lagging consumer group — node ${process.version}\n`);
    console.log('| measure | value |\n|---|---|');
    for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
    console.log(
      'BENCH_JSON ' +
        JSON.stringify({
          bench: 'memory',
          n,
          fsync,
          batch: Number(batch),
          inflight: Number(inflight),
          produceMsgsPerSec: Math.round(n / (produceMs / 1000)),
          maxLag,
          lagAtProducerEnd: catchupLag,
          catchupMsgsPerSec: Math.round(catchupLag / (catchupMs / 1000)),
          endToEndMsgsPerSec: Math.round(n / (totalMs / 1000)),
          elapsedSec: +(totalMs / 1000).toFixed(1),
          distinct,
          deliveries,
          finalLag,
          maxRssMiB: +maxOf('rss').toFixed(1),
          maxHeapTotalMiB: +maxOf('heapTotal').toFixed(1),
          maxHeapUsedMiB: +maxOf('heap').toFixed(1),
          maxExternalMiB: +maxOf('external').toFixed(1),
          maxArrayBuffersMiB: +maxOf('ab').toFixed(1),
          rssUnder250MB: maxOf('rss') * MiB < 250e6,
          rssTimeline: samples.filter((_, i) => i % 10 === 0).map(s => [+s.t.toFixed(0), +s.rss.toFixed(0), s.lag]),
        }),
    );
  } finally {
    broker.send({ cmd: 'stop' });
    await new Promise<void>(r => {
      const t = setTimeout(() => {
        broker.kill('SIGKILL');
        r();
      }, 10_000);
      broker.once('exit', () => {
        clearTimeout(t);
        r();
      });
    });
    for (const k of kids) if (k.exitCode === null && k.signalCode === null) k.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = arg('role', '');
const run = role === 'broker' ? brokerRole : role === 'producer' ? producerRole : role === 'consumer' ? consumerRole : main;
run().catch(e => {
  console.error(e);
  process.exit(1);
});
