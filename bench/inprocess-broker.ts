/**
 * In-process broker micro-benchmark at the BusConnection level (no Nest):
 *   publish → push handler, publish → pull handler with ack (durable topic),
 *   RPC round trip. Usage: npx tsc -p tsconfig.json && node .build/bench/inprocess-broker.js [--dir DIR] [--n N]
 * Without --dir it uses a temp dir with the file store when available, else ':memory:'.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Broker } from '../lib/broker/broker.js';
import type { BusConnection, Consumer, OutgoingMessage } from '../lib/connection/types.js';
import type { FsyncMode } from '../lib/options.js';
import { arg, publishSingles } from './common.js';

const N = Number(arg('n', '300000'));
const quiet = { warn: () => undefined, error: (m: string) => console.error(m) };
const payload = Buffer.alloc(100, 'x');

async function openBroker(dataDir: string, fsync: FsyncMode): Promise<Broker> {
  return Broker.open({ dataDir, fsync, topics: { 'live.>': { durable: false } }, retentionCheckMs: 0, logger: quiet });
}

async function publishBatches(c: BusConnection, topic: string, n: number, batch: number, window: number): Promise<void> {
  const msgs: OutgoingMessage[] = Array.from({ length: batch }, () => ({ value: payload }));
  let sent = 0;
  let inFlight = 0;
  await new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (inFlight < window && sent < n) {
        sent += batch;
        inFlight++;
        c.produce(topic, msgs).then(() => {
          inFlight--;
          if (sent >= n && inFlight === 0) resolve();
          else pump();
        }, reject);
      }
    };
    pump();
  });
}

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
}

async function benchPush(b: Broker, topic: string, label: string, publish: (c: BusConnection) => Promise<void>, n: number): Promise<void> {
  const pub = b.connect();
  const sub = b.connect();
  let got = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>(r => (resolveAll = r));
  const s = await sub.subscribe({ pattern: topic }, d => {
    got++;
    s.done(d);
    if (got === n) resolveAll();
  });
  const t0 = performance.now();
  await publish(pub);
  await all;
  const ms = performance.now() - t0;
  console.log(`publish → push   ${label.padEnd(42)} ${rate(n, ms).padStart(12)}  (${n} msgs, ${ms.toFixed(0)} ms)`);
  await pub.close();
  await sub.close();
}

async function benchPull(b: Broker, topic: string, label: string, n: number, concurrency: number, batch: number): Promise<void> {
  const pub = b.connect();
  const con = b.connect();
  let got = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>(r => (resolveAll = r));
  const consumer: Consumer = await con.consume(
    { topic, group: 'bench', from: 'latest', concurrency, ackWaitMs: 30_000, maxDeliver: 5, backoffMs: [1000], deadLetter: false },
    d => {
      got++;
      // ack from a microtask, as an async handler would
      queueMicrotask(() => consumer.ack(d));
      if (got === n) resolveAll();
    },
  );
  await new Promise(r => setImmediate(r));
  const t0 = performance.now();
  if (batch > 1) await publishBatches(pub, topic, n, batch, 64);
  else await publishSingles(pub, [topic], n, 1000, payload);
  const tPub = performance.now() - t0;
  await all;
  const ms = performance.now() - t0;
  console.log(
    `publish → pull+ack ${label.padEnd(40)} ${rate(n, ms).padStart(12)}  (${n} msgs, ${ms.toFixed(0)} ms; publish alone ${rate(n, tPub)})`,
  );
  await consumer.close();
  await pub.close();
  await con.close();
}

async function benchRpc(b: Broker, n: number, window: number): Promise<void> {
  const server = b.connect();
  const client = b.connect();
  await server.serveRpc('echo', req => req.reply(req.value, true));
  const lat: number[] = [];
  let done = 0;
  const t0 = performance.now();
  await new Promise<void>(resolve => {
    let sent = 0;
    const one = (): void => {
      sent++;
      const t = performance.now();
      client.request('echo', payload, {
        reply: () => {
          lat.push(performance.now() - t);
          done++;
          if (done === n) resolve();
          else if (sent < n) one();
        },
        error: e => {
          throw e;
        },
      });
    };
    for (let i = 0; i < window; i++) one();
  });
  const ms = performance.now() - t0;
  lat.sort((x, y) => x - y);
  const p = (q: number): string => (lat[Math.floor(q * (lat.length - 1))] * 1000).toFixed(1) + ' µs';
  console.log(`rpc round trip   ${`${window} in flight`.padEnd(42)} ${rate(n, ms).padStart(12)}  p50 ${p(0.5)}, p99 ${p(0.99)}`);
  await server.close();
  await client.close();
}

async function main(): Promise<void> {
  let dir = arg('dir', '');
  let tmp: string | undefined;
  let hasFileStore = fs.existsSync(new URL('../lib/store/index.js', import.meta.url));
  if (!dir) {
    if (hasFileStore) dir = tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'logbus-bench-'));
    else dir = ':memory:';
  }
  const fsync = arg('fsync', 'always') as FsyncMode;
  console.log(`node ${process.version}, ${os.cpus().length} cpus, dataDir ${dir === ':memory:' ? ':memory:' : 'temp dir'}, fsync ${fsync}, 100-byte payloads`);
  const b = await openBroker(dir, fsync);
  try {
    await benchPush(b, 'live.a', 'non-durable, emit-style singles (1000 in flight)', c => publishSingles(c, ['live.a'], N, 1000, payload), N);
    await benchPush(b, 'live.b', 'non-durable, batches of 100', c => publishBatches(c, 'live.b', N, 100, 64), N);
    await benchPush(b, 'push.c', `durable, emit-style singles (fsync ${fsync})`, c => publishSingles(c, ['push.c'], N, 1000, payload), N);
    await benchPull(b, 'pull.a', `conc 64, emit-style singles (fsync ${fsync})`, N, 64, 1);
    await benchPull(b, 'pull.b', `conc 64, batches of 100 (fsync ${fsync})`, N, 64, 100);
    await benchPull(b, 'pull.c', `conc 1, batches of 100 (fsync ${fsync})`, Math.min(N, 100_000), 1, 100);
    await benchRpc(b, 20_000, 1);
    await benchRpc(b, 100_000, 100);
  } finally {
    await b.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main().catch(e => {
  console.error(e);
  process.exitCode = 1;
});
