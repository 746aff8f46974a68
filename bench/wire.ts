/**
 * Cross-process figures for the network broker: the broker runs in a child
 * process (the `logbus broker` CLI); publisher, subscriber, consumer and RPC
 * peers are connections from this process over loopback TCP.
 *
 *   npx tsc -p tsconfig.json && node .build/bench/wire.js [--fsync always|never]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { WireConnection } from '../lib/wire/client.js';
import { arg, wireConn } from './common.js';

const fsync = arg('fsync', 'always');
const MESSAGES = 100_000;
const VALUE = Buffer.alloc(100, 'x');

async function startBroker(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [resolve('.build/lib/cli/main.js'), 'broker', '--data', dir, '--port', '0', '--fsync', fsync], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((res, rej) => {
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      const m = /logbus:\/\/[\d.]+:\d+/.exec(s);
      if (m) res(m[0]);
    });
    proc.once('exit', code => rej(new Error(`broker exited with ${code}`)));
  });
  return {
    url,
    stop: () =>
      new Promise<void>(r => {
        proc.once('exit', () => r());
        proc.kill('SIGTERM');
      }),
  };
}

const conn = (url: string): Promise<WireConnection> => wireConn(url, { rpcTimeoutMs: 30_000 });

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString()}/s`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'logbus-bench-wire-'));
  const broker = await startBroker(dir);
  const results: string[] = [];
  try {
    const pub = await conn(broker.url);
    const sub = await conn(broker.url);
    const worker = await conn(broker.url);

    // publish → push subscriber, 256 single-message produce calls in flight
    let pushed = 0;
    let allPushed!: () => void;
    const pushDone = new Promise<void>(r => (allPushed = r));
    const s = await sub.subscribe({ pattern: 'bench.push' }, d => {
      s.done(d);
      if (++pushed === MESSAGES) allPushed();
    });
    let t0 = performance.now();
    await pipeline(MESSAGES, 256, () => pub.produce('bench.push', [{ value: VALUE }]));
    const produceMs = performance.now() - t0;
    await pushDone;
    const pushMs = performance.now() - t0;
    results.push(`produce 100 B, 1 per call, 256 in flight (fsync ${fsync}): ${rate(MESSAGES, produceMs)}`);
    results.push(`  … and delivered to a push subscriber connection: ${rate(MESSAGES, pushMs)}`);

    // batched produce
    t0 = performance.now();
    await pipeline(MESSAGES / 100, 16, () => pub.produce('bench.batch', Array.from({ length: 100 }, () => ({ value: VALUE }))));
    results.push(`produceBatch 100 × 100 B, 16 batches in flight: ${rate(MESSAGES, performance.now() - t0)}`);

    // pull with acks, from the backlog just written
    let pulled = 0;
    let allPulled!: () => void;
    const pullDone = new Promise<void>(r => (allPulled = r));
    t0 = performance.now();
    const consumer = await worker.consume(
      { topic: 'bench.batch', group: 'bench', from: 'earliest', concurrency: 1000, ackWaitMs: 30_000, maxDeliver: 5, backoffMs: [100], deadLetter: false },
      d => {
        consumer.ack(d);
        if (++pulled === MESSAGES) allPulled();
      },
    );
    await pullDone;
    results.push(`pull consumer with acks, concurrency 1000: ${rate(MESSAGES, performance.now() - t0)}`);
    await consumer.close();

    // RPC
    await worker.serveRpc('bench.rpc', req => req.reply(req.value, true));
    const call = () =>
      new Promise<void>((res, rej) => pub.request('bench.rpc', VALUE, { reply: () => res(), error: rej }));
    const lat: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const a = performance.now();
      await call();
      lat.push(performance.now() - a);
    }
    lat.sort((a, b) => a - b);
    results.push(`RPC one at a time: p50 ${lat[lat.length >> 1].toFixed(3)} ms, p99 ${lat[Math.floor(lat.length * 0.99)].toFixed(3)} ms`);
    t0 = performance.now();
    await pipeline(30_000, 100, call);
    results.push(`RPC, 100 in flight: ${rate(30_000, performance.now() - t0)}`);

    await Promise.all([pub.close(), sub.close(), worker.close()]);
  } finally {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`wire bench (broker in its own process, clients in another, loopback), node ${process.version}`);
  for (const r of results) console.log(`  ${r}`);
}

/** Runs `total` calls with at most `inFlight` outstanding. */
async function pipeline(total: number, inFlight: number, fn: () => Promise<unknown>): Promise<void> {
  let started = 0;
  const lane = async () => {
    while (started < total) {
      started++;
      await fn();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

main().catch(e => {
  console.error(e);
  process.exit(1);
});
