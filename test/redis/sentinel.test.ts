/**
 * The driver behind Redis Sentinel: a primary, a replica and one sentinel,
 * started by the test on free ports (temp dir, no persistence). The url names
 * the sentinel and the monitored primary (`?sentinel=NAME`); the driver finds
 * the primary through it and follows a failover by itself.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isClusterUrl, sentinelName } from '../../lib/connection/redis/client.js';
import { Bus, buf, freePort, killProcess, spawnRedis, spec, text, uniquePrefix, waitFor } from './helpers.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'logbus-redis-sentinel-'));
const procs: ChildProcess[] = [];
let primary = 0;
let replica = 0;
let sentinel = 0;

const cli = (port: number, ...args: string[]) => run('redis-cli', ['-p', String(port), ...args]).then(r => r.stdout.trim());

beforeAll(async () => {
  [primary, replica, sentinel] = [await freePort(), await freePort(), await freePort()];
  const base = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir];
  procs.push(await spawnRedis(primary, ['--port', String(primary), ...base]));
  procs.push(await spawnRedis(replica, ['--port', String(replica), '--replicaof', '127.0.0.1', String(primary), ...base]));
  const conf = join(dir, 'sentinel.conf'); // sentinel rewrites its config file: it must be writable
  writeFileSync(
    conf,
    [`port ${sentinel}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor logbus 127.0.0.1 ${primary} 1`,
      'sentinel down-after-milliseconds logbus 1000', 'sentinel failover-timeout logbus 5000'].join('\n') + '\n',
  );
  procs.push(await spawnRedis(sentinel, [conf, '--sentinel']));
  await waitFor('the replica in sync', async () => (await cli(replica, 'info', 'replication')).includes('master_link_status:up'));
  await waitFor('the sentinel sees the replica', async () => (await cli(sentinel, 'sentinel', 'replicas', 'logbus')).includes(String(replica)));
}, 30_000);

afterAll(async () => {
  await Promise.all(procs.map(p => killProcess(p)));
  rmSync(dir, { recursive: true, force: true });
});

test('a url naming a sentinel is not a Cluster url, even with several hosts', () => {
  expect(sentinelName('redis://h1:26379,h2:26379?sentinel=mymaster')).toBe('mymaster');
  expect(isClusterUrl('redis://h1:26379,h2:26379?sentinel=mymaster')).toBe(false);
  expect(isClusterUrl('redis://h1:7000,h2:7001')).toBe(true);
  expect(sentinelName('redis://h1:6379')).toBeUndefined();
});

test('produce, read, push and pull through Sentinel, and on after a failover', async () => {
  const bus = new Bus(uniquePrefix(), `redis://127.0.0.1:${sentinel}?sentinel=logbus`);
  try {
    const a = await bus.connection();
    const b = await bus.connection();
    const pushed: string[] = [];
    await b.subscribe({ pattern: 'orders.*' }, d => pushed.push(`${text(d)}@${d.offset}`));
    expect((await a.produce('orders.created', [{ value: buf('one') }, { value: buf('two') }])).map(r => r.offset)).toEqual([0, 1]);
    await waitFor('push', () => pushed.length === 2);
    const pulled: string[] = [];
    const consumer = await b.consume(spec('orders.created', 'billing'), d => {
      pulled.push(text(d));
      consumer.ack(d);
    });
    await waitFor('pull', () => pulled.length === 2);
    // the data is on the replica before it is promoted
    await waitFor('replicated', async () => (await cli(replica, 'dbsize')) === (await cli(primary, 'dbsize')));

    await cli(sentinel, 'sentinel', 'failover', 'logbus');
    await waitFor(
      'the replica promoted',
      async () => (await cli(sentinel, 'sentinel', 'get-master-addr-by-name', 'logbus')).endsWith(String(replica)),
      15_000,
    );
    // the driver reconnects to the new primary by itself: offsets go on, the group resumes
    let third: number | undefined;
    await waitFor(
      'produce on the new primary',
      async () => {
        third = (await a.produce('orders.created', [{ value: buf('three') }]).catch(() => [{ offset: undefined }]))[0].offset;
        return third !== undefined;
      },
      15_000,
    );
    expect(third).toBe(2);
    await waitFor('pull after failover', () => pulled.includes('three'), 15_000);
    expect((await a.read('orders.created', 'earliest', 10)).map(text)).toEqual(['one', 'two', 'three']);
    expect((await cli(replica, 'role')).split('\n')[0]).toBe('master');
  } finally {
    await bus.closeAll();
  }
}, 60_000);
