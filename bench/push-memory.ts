/**
 * Broker memory with a stuck push subscriber: does the subscriber buffer
 * (`subscriberBufferBytes`, default 8 MiB) bound the broker's RSS?
 *
 * A standalone wire broker (bench/soak-broker.js, a child process), one
 * subscriber that never finishes a message (its buffer fills, then drops),
 * one fast subscriber beside it, and a producer publishing N × 100 B
 * messages to a push-only topic (--no-stuck: without the stuck one). Broker VmRSS is printed before, at its peak
 * and after; the fast subscriber must get every message and the stuck one's
 * held + dropped must equal N.
 *
 *   npx tsc -p tsconfig.json && node .build/bench/push-memory.js [--n 2000000] [--size 100] [--batch 500]
 *       [--inflight 8] [--buffer-bytes 8388608] [--durable] [--no-stuck]
 */
import type { Delivery, OutgoingMessage } from '../lib/connection/types.js';
import type { WireConnection } from '../lib/wire/client.js';
import { arg, produceAll, rssMiB, startSoakBroker, wireConn } from './common.js';

const N = Number(arg('n', '2000000'));
const SIZE = Number(arg('size', '100'));
const BATCH = Number(arg('batch', '500'));
const INFLIGHT = Number(arg('inflight', '8'));
const BUFFER_BYTES = Number(arg('buffer-bytes', String(8 * 1024 * 1024)));
const DURABLE = process.argv.includes('--durable');
/** --no-stuck: the same run without the stuck subscriber, for the broker's baseline growth. */
const STUCK = !process.argv.includes('--no-stuck');
const TOPIC = 'bench.push';
const MiB = 1024 * 1024;

const connect = (port: number): Promise<WireConnection> => wireConn(`logbus://127.0.0.1:${port}`, { rpcTimeoutMs: 60_000 });

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise(r => setTimeout(r, 50));
  }
  return true;
}

async function main(): Promise<void> {
  const broker = await startSoakBroker({ dataDir: ':memory:', port: 0, topics: { [TOPIC]: { durable: DURABLE } }, retentionCheckMs: 0 });
  const subs = await connect(broker.port);
  const producer = await connect(broker.port);
  const stuck: Delivery[] = [];
  if (STUCK) await subs.subscribe({ pattern: TOPIC, bufferBytes: BUFFER_BYTES }, d => void stuck.push(d)); // never done()
  let fast = 0;
  const fastSub = await subs.subscribe({ pattern: TOPIC, bufferBytes: BUFFER_BYTES }, d => {
    fast++;
    fastSub.done(d);
  });
  await new Promise(r => setTimeout(r, 500));
  const before = rssMiB(broker.pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(broker.pid))), 200);

  const msgs: OutgoingMessage[] = Array.from({ length: BATCH }, () => ({ value: Buffer.alloc(SIZE, 'x') }));
  const t0 = performance.now();
  await produceAll(producer, TOPIC, msgs, N, INFLIGHT);
  const produceMs = performance.now() - t0;
  const complete = await waitUntil(() => fast === N, 120_000);
  await new Promise(r => setTimeout(r, 1000));
  clearInterval(sampler);
  const after = rssMiB(broker.pid);
  peak = Math.max(peak, after);
  const stats = await producer.stats();
  const stuckDropped = Object.entries(stats.dropped).find(([, n]) => n > 0)?.[1] ?? 0;

  const f = (x: number): string => x.toFixed(1);
  console.log(`push memory: ${N} × ${SIZE} B to a ${DURABLE ? 'durable' : 'push-only'} topic, stuck subscriber buffer ${BUFFER_BYTES / MiB} MiB`);
  console.log(`  produced in ${(produceMs / 1000).toFixed(1)} s; fast subscriber got ${fast}/${N}${complete ? '' : ' (INCOMPLETE)'}`);
  if (STUCK) console.log(`  stuck subscriber: held ${stuck.length}, dropped ${stuckDropped}, held + dropped ${stuck.length + stuckDropped === N ? '==' : '!='} ${N}`);
  console.log(`  broker RSS MiB: before ${f(before)}, peak ${f(peak)}, after ${f(after)} (growth ${f(after - before)}, peak growth ${f(peak - before)})`);

  await subs.close();
  await producer.close();
  await broker.stop();
}

await main();
