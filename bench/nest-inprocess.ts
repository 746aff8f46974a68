/**
 * Through real Nest handlers, one process, embedded broker on a temp dataDir
 * (default fsync 'always'): publish → push handler, publish → pull handler
 * with ack, RPC round trips (one at a time and 100 in flight).
 *
 *   npx tsc -p tsconfig.json && node .build/bench/nest-inprocess.js [messages] [--only push|pull|rpc|floor]
 *   (--only runs one kind of row, e.g. under --cpu-prof)
 */
import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusServer, Subscribe } from '../lib/index.js';
import { arg } from './common.js';

const N = Number(process.argv.slice(2).find(a => /^\d+$/.test(a)) ?? 200_000);
const ONLY = arg('only', '') || undefined;
const BATCH = 1000;
const WINDOW = 8;
const RPCS = 5_000;

const counts = { push: 0, pull: 0 };

@Controller()
class Handlers {
  @Subscribe('bench.push')
  push(@Payload() _d: object) {
    counts.push++;
  }

  @Consume('bench.pull', { group: 'bench', concurrency: 64 })
  pull(@Payload() _d: object) {
    counts.pull++;
  }

  @MessagePattern('bench.rpc')
  rpc(@Payload() n: number) {
    return n + 1;
  }
}

@Module({ controllers: [Handlers] })
class BenchModule {}

async function publishAll(client: LogBusClient, topic: string): Promise<void> {
  const batch = Array.from({ length: BATCH }, (_, i) => ({ data: { i, pad: 'x'.repeat(80) } }));
  const inflight: Promise<unknown>[] = [];
  for (let i = 0; i < N / BATCH; i++) {
    inflight.push(client.produceBatch(topic, batch));
    if (inflight.length >= WINDOW) await inflight.shift();
  }
  await Promise.all(inflight);
}

async function untilCount(kind: keyof typeof counts): Promise<void> {
  while (counts[kind] < N) await new Promise(r => setImmediate(r));
}

function report(what: string, n: number, ms: number, cpu: NodeJS.CpuUsage): void {
  const perS = Math.round((n / ms) * 1000);
  const cpuUs = ((cpu.user + cpu.system) / n).toFixed(2);
  console.log(`${what.padEnd(34)} ${String(perS).padStart(9)} /s   ${cpuUs} cpu µs each`);
}

async function measure(what: string, n: number, run: () => Promise<void>): Promise<void> {
  if (ONLY !== undefined && !what.toLowerCase().includes(ONLY)) return;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await run();
  report(what, n, performance.now() - t0, process.cpuUsage(c0));
}

/**
 * The floor any transport pays per event, with no broker at all: encode the
 * payload to JSON bytes, decode it, and call the handler Nest registered
 * (params, pipes, interceptors chain), in windows like the push path.
 */
async function nestHandlerFloor(server: LogBusServer, json: boolean): Promise<void> {
  const handler = server.getHandlerByPattern('bench.push')!;
  const payload = { i: 0, pad: 'x'.repeat(80) };
  const ctx = new LogBusContext(['bench.push', undefined, Date.now(), undefined, {}, 1, undefined]);
  for (let i = 0; i < N; i += BATCH) {
    const window: unknown[] = [];
    for (let j = 0; j < BATCH; j++) {
      payload.i = i + j;
      window.push(json ? handler(JSON.parse(Buffer.from(JSON.stringify(payload)).toString('utf8')), ctx) : handler(payload, ctx));
    }
    await Promise.all(window);
  }
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'logbus-bench-nest-'));
  const server = new LogBusServer({ dataDir });
  const app = await NestFactory.createMicroservice(BenchModule, { strategy: server, logger: ['error'] });
  await app.listen();
  const client = new LogBusClient({ dataDir });
  await client.connect();
  try {
    console.log(`${N} messages of ~100 B, batches of ${BATCH}, ${WINDOW} batches in flight, fsync 'always'`);
    await measure('floor: Nest handler alone', N, async () => {
      await nestHandlerFloor(server, false);
      counts.push = 0;
    });
    await measure('floor: JSON + Nest handler, no bus', N, async () => {
      await nestHandlerFloor(server, true);
      counts.push = 0;
    });
    await measure('publish → push handler', N, async () => {
      await publishAll(client, 'bench.push');
      await untilCount('push');
    });
    await measure('publish → pull handler + ack', N, async () => {
      await publishAll(client, 'bench.pull');
      await untilCount('pull');
    });
    await measure('RPC round trip, one at a time', RPCS, async () => {
      for (let i = 0; i < RPCS; i++) await lastValueFrom(client.send('bench.rpc', i));
    });
    await measure('RPC round trip, 100 in flight', RPCS * 4, async () => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          while (next < RPCS * 4) await lastValueFrom(client.send('bench.rpc', next++));
        }),
      );
    });
  } finally {
    await client.close();
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch(e => {
  console.error(e);
  process.exitCode = 1;
});
