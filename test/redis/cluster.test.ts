/**
 * The driver on Redis Cluster: three redis-server nodes started by the test on
 * free ports (temp dir, no persistence), joined with `redis-cli --cluster create`.
 * Topics land in different slots and nodes; push, pull and RPC must not care.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Delivery } from '../../lib/connection/types.js';
import { isLogBusError } from '../../lib/errors.js';
import { Bus, buf, freePort, killProcess, sleep, spawnRedis, spec, text, uniquePrefix, waitFor } from './helpers.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'logbus-redis-cluster-'));
const nodes: ChildProcess[] = [];
let ports: number[] = [];
let bus: Bus;

beforeAll(async () => {
  // cluster bus ports are port + 10000: keep them below 65536
  while (ports.length < 3) {
    const p = await freePort();
    if (p < 55_000 && !ports.includes(p)) ports.push(p);
  }
  for (const port of ports) {
    const d = join(dir, String(port));
    mkdirSync(d);
    nodes.push(
      await spawnRedis(port, [
        '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(d, 'nodes.conf'),
        '--dir', d, '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      ]),
    );
  }
  await run('redis-cli', ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
  await waitFor('cluster_state:ok on every node', async () => {
    for (const port of ports) {
      const { stdout } = await run('redis-cli', ['-p', String(port), 'cluster', 'info']);
      if (!stdout.includes('cluster_state:ok')) return false;
    }
    return true;
  });
  bus = new Bus(uniquePrefix(), `redis://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`);
}, 30_000);

afterAll(async () => {
  await bus?.closeAll();
  await Promise.all(nodes.map(n => killProcess(n)));
  rmSync(dir, { recursive: true, force: true });
});

test('produce, read, push, pull and RPC on a three-node Redis Cluster', async () => {
  const a = await bus.connection();
  const b = await bus.connection();
  const c = await bus.connection();

  // push: one wildcard subscription sees topics that live on different nodes
  const pushed: string[] = [];
  await b.subscribe({ pattern: 'shard.*' }, d => pushed.push(`${d.topic}@${d.offset}`));
  const topicNames = Array.from({ length: 6 }, (_, i) => `shard.t${i}`);
  for (const t of topicNames) {
    const r = await a.produce(t, [{ value: buf(`${t}-0`) }, { value: buf(`${t}-1`), key: 'k' }]);
    expect(r.map(x => x.offset)).toEqual([0, 1]);
  }
  const used = await Promise.all(ports.map(async p => Number((await run('redis-cli', ['-p', String(p), 'dbsize'])).stdout.trim())));
  expect(used.filter(n => n > 0).length).toBeGreaterThanOrEqual(2); // the topics really are spread over nodes
  await waitFor('push from every node', () => pushed.length === 12);
  expect(pushed.sort()).toEqual(topicNames.flatMap(t => [`${t}@0`, `${t}@1`]).sort());
  expect((await c.read('shard.t3', 'earliest', 10)).map(text)).toEqual(['shard.t3-0', 'shard.t3-1']);
  expect((await c.topics()).filter(t => t.name.startsWith('shard.')).map(t => t.nextOffset)).toEqual([2, 2, 2, 2, 2, 2]);

  // pull: one group across two members, a failure retried
  const pulled: Delivery[] = [];
  for (const conn of [b, c]) {
    const consumer = await conn.consume(spec('shard.t0', 'g', { backoffMs: [10] }), d => {
      pulled.push(d);
      if (text(d) === 'shard.t0-0' && d.deliveryCount === 1) consumer.nack(d, 'once');
      else consumer.ack(d);
    });
  }
  await waitFor('pull done', async () => (await a.groups('shard.t0'))[0]?.lag === 0 && pulled.length === 3);
  expect(pulled.map(d => `${text(d)}#${d.deliveryCount}`).sort()).toEqual(['shard.t0-0#1', 'shard.t0-0#2', 'shard.t0-1#1']);

  // RPC: liveness counted where the requests go (sharded pub/sub), each request to one responder
  const noOne = await new Promise<Error>(resolve => a.request('nobody', buf('x'), { reply: () => undefined, error: resolve }));
  expect(isLogBusError(noOne, 'NO_RESPONDERS')).toBe(true);
  const handled: string[] = [];
  for (const conn of [b, c]) {
    await conn.serveRpc('echo', req => {
      handled.push(req.value.toString());
      req.reply(Buffer.concat([buf('re:'), req.value]), true);
    });
  }
  const call = (v: string) =>
    new Promise<string>((resolve, reject) => a.request('echo', buf(v), { reply: (x, done) => done && resolve(x.toString()), error: reject }));
  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => call(String(i))));
  expect(replies).toEqual(Array.from({ length: 20 }, (_, i) => `re:${i}`));
  expect(handled.sort()).toEqual(Array.from({ length: 20 }, (_, i) => String(i)).sort());
  await sleep(10);
}, 30_000);
