/**
 * Redis killed (SIGKILL) and restarted under load, with persistence on
 * (appendonly, appendfsync always): every acknowledged produce survives, and
 * producers and consumers recover by themselves. Runs a second redis-server of
 * its own on a free port, in a temp dir.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { Bus, deleteKeys, freePort, killProcess, requireRedis, sleep, spawnRedis, spec, text, uniquePrefix, waitFor } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'logbus-redis-restart-'));
let port = 0;
let server: ChildProcess | undefined;
let admin: Redis | undefined;

async function startRedis(): Promise<void> {
  server = await spawnRedis(port, [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no',
  ]);
}

function killRedis(): Promise<void> {
  const child = server!;
  server = undefined;
  return killProcess(child);
}

beforeAll(async () => {
  port = await freePort();
  await startRedis();
});

afterAll(async () => {
  if (server) await killRedis();
  admin?.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

test('Redis killed and restarted under load: acked messages survive, consumers recover', async () => {
  const url = `redis://127.0.0.1:${port}`;
  const prefix = uniquePrefix();
  const bus = new Bus(prefix, url);
  try {
    const producer = await bus.connection();
    const statuses: string[] = [];
    producer.onStatus(s => statuses.push(s));
    const consumerConn = await bus.connection();
    const consumed = new Set<string>();
    const c = await consumerConn.consume(spec('ledger', 'g', { concurrency: 8 }), d => {
      consumed.add(text(d));
      c.ack(d);
    });

    const acked: string[] = [];
    const failed: string[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const batch = Array.from({ length: 5 }, (_, j) => `m${i}-${j}`);
        try {
          await producer.produce('ledger', batch.map(v => ({ value: Buffer.from(v) })));
          acked.push(...batch);
        } catch {
          failed.push(...batch); // may or may not be stored: not acknowledged
        }
        await sleep(2);
      }
    })();

    await waitFor('load before the crash', () => acked.length >= 200 && consumed.size >= 50);
    await killRedis();
    await sleep(300);
    await startRedis();
    const ackedAtRestart = acked.length;
    await waitFor('load after the restart', () => acked.length >= ackedAtRestart + 200, 20_000);
    stop = true;
    await load;

    // every acknowledged message is in the log (the log may hold more: retried or unacknowledged sends)
    const log = await producer.read('ledger', 'earliest', 10_000);
    const stored = new Set(log.map(text));
    expect(acked.filter(v => !stored.has(v))).toEqual([]);
    expect(log.map(m => m.offset)).toEqual(log.map((_, i) => i));
    // the consumer came back by itself and caught up with every acknowledged message
    await waitFor('consumer caught up', () => acked.every(v => consumed.has(v)), 20_000);
    expect(producer.status).toBe('connected');
    expect(statuses).toContain('reconnecting'); // the crash was seen, not slept through
  } finally {
    await bus.closeAll();
    admin = await requireRedis(url).catch(() => undefined);
    if (admin) await deleteKeys(admin, prefix);
  }
}, 60_000);
