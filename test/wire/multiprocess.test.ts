/**
 * Many processes on one broker over real sockets: each member is a child
 * process (test/wire/fixtures/member.ts, compiled to .build/).
 */
import { rmSync } from 'node:fs';
import { lastValueFrom } from 'rxjs';
import { LogBusClient } from '../../lib/index.js';
import type { WireConnection } from '../../lib/wire/client.js';
import { LogBroker } from '../../lib/wire/log-broker.js';
import { built, type Child, freePort, killAll, spawnMember, spawnNode } from './children.js';
import { client, json, quietBrokerLogger, tempDir, waitFor } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let broker: LogBroker | undefined;
let url: string;
let pub: WireConnection;

beforeEach(async () => {
  tmp = tempDir();
  broker = await LogBroker.start({ dataDir: tmp.dir, port: 0, fsync: 'never', logger: quietBrokerLogger, wire: { logger: { log() {}, warn() {} } } });
  url = `logbus://127.0.0.1:${broker.address().port}`;
  pub = client(broker.address().port, {}, { outageWaitMs: 20_000 });
  await pub.connect();
});

/** Closers for what a test opened besides children and `pub` (run even when the test failed). */
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  await Promise.all(cleanups.splice(0).map(f => f().catch(() => undefined)));
  await killAll();
  await pub.close();
  await broker?.close();
  tmp.remove();
});

const ready = (c: Child) => c.waitLine('member ready', l => l?.ready === true);
const handled = (c: Child): number[] => c.lines.filter((l: any) => typeof l?.handled === 'number').map((l: any) => l.handled as number);

test('push fan-out across processes: every subscriber process gets every message', async () => {
  const subs = [spawnMember(url, 'subscribe', 'prices.*'), spawnMember(url, 'subscribe', 'prices.>')];
  await Promise.all(subs.map(ready));
  for (let i = 0; i < 5; i++) await pub.produce('prices.eur', Array.from({ length: 10 }, (_, j) => ({ value: json(i * 10 + j) })));
  const expected = Array.from({ length: 50 }, (_, i) => i);
  const got = (c: Child) => c.lines.filter((l: any) => l?.got !== undefined).map((l: any) => l.got);
  await waitFor('both processes got 50', () => subs.every(c => got(c).length === 50));
  for (const c of subs) expect(got(c)).toEqual(expected);
});

test('one group shared by two processes; kill -9 of one mid-stream: every message handled, lag reaches 0', async () => {
  const a = spawnMember(url, 'consume', 'jobs', 'workers', '2');
  const b = spawnMember(url, 'consume', 'jobs', 'workers', '2');
  await Promise.all([ready(a), ready(b)]);
  const total = 400;
  for (let i = 0; i < total; i += 50) await pub.produce('jobs', Array.from({ length: 50 }, (_, j) => ({ value: json(i + j) })));
  await waitFor('both members busy', () => handled(a).length >= 20 && handled(b).length >= 20);
  a.proc.kill('SIGKILL');
  await a.exited;
  // ackWaitMs is 10 minutes in the fixture: only the broker noticing the dead session can bring these back in time
  await waitFor('every offset handled', () => new Set([...handled(a), ...handled(b)]).size === total, 30_000);
  await waitFor('lag 0', async () => (await pub.groups('jobs'))[0]?.lag === 0, 30_000);
  const [g] = await pub.groups('jobs');
  expect(g).toMatchObject({ group: 'workers', committedOffset: total, lag: 0, inFlight: 0 });
  expect(handled(a).length).toBeGreaterThan(0);
  expect(handled(a).length).toBeLessThan(total);
});

test('a member that stops answering (SIGSTOP) is dropped after missed heartbeats and its messages go to the other member', async () => {
  await pub.close();
  await broker!.close();
  broker = await LogBroker.start({ dataDir: tmp.dir, port: 0, fsync: 'never', logger: quietBrokerLogger, wire: { heartbeatMs: 100, heartbeatMisses: 3, logger: { log() {}, warn() {} } } });
  url = `logbus://127.0.0.1:${broker.address().port}`;
  pub = client(broker.address().port);
  await pub.connect();
  // a takes its share and never acks it (ack delay 10 minutes, ackWaitMs 10 minutes)
  const a = spawnMember(url, 'consume', 'jobs', 'workers', '600000');
  const b = spawnMember(url, 'consume', 'jobs', 'workers', '0');
  await Promise.all([ready(a), ready(b)]);
  await pub.produce('jobs', Array.from({ length: 40 }, (_, i) => ({ value: json(i) })));
  await waitFor('a holds some messages', () => handled(a).length > 0);
  a.proc.kill('SIGSTOP'); // alive but silent: its socket stays open, it answers no PING
  const held = handled(a);
  // only the broker dropping a for missed heartbeats can hand a's share to b
  await waitFor('b handled what a held', () => held.every(o => handled(b).includes(o)), 30_000);
  expect(new Set(handled(b)).size).toBe(40);
  a.proc.kill('SIGCONT');
  await a.waitLine('a learns it was dropped', l => l?.status === 'reconnecting');
});

test('RPC across processes: requests are spread over the responder processes and answered', async () => {
  const responders = [spawnMember(url, 'rpc', 'math.double'), spawnMember(url, 'rpc', 'math.double')];
  await Promise.all(responders.map(ready));
  const call = (n: number) =>
    new Promise<{ double: number; pid: number }>((resolve, reject) =>
      pub.request('math.double', json({ n }), { reply: v => resolve(JSON.parse(v.toString())), error: reject }),
    );
  const replies = await Promise.all(Array.from({ length: 20 }, (_, n) => call(n)));
  expect(replies.map(r => r.double)).toEqual(Array.from({ length: 20 }, (_, n) => n * 2));
  expect(new Set(replies.map(r => r.pid))).toEqual(new Set(responders.map(r => r.proc.pid)));
});

test('a broker process restarted under a running client and consumer: both carry on, acked not redelivered, unacked delivered', async () => {
  // This test runs its own broker as a child process (the CLI), on a fixed port it can restart on.
  await pub.close();
  await broker!.close();
  broker = undefined;
  const port = await freePort();
  url = `logbus://127.0.0.1:${port}`;
  const cli = built('lib/cli/main.js');
  const startBroker = async () => {
    const b = spawnNode(cli, ['broker', '--data', tmp.dir, '--port', String(port), '--fsync', 'never']);
    await b.waitLine('broker listening', l => typeof l === 'string' && l.includes('listening'));
    return b;
  };
  let b = await startBroker();
  pub = client(port, {}, { outageWaitMs: 20_000 });
  await pub.connect();
  const consumer = spawnMember(url, 'consume', 'work', 'g', '0');
  await ready(consumer);

  await pub.produce('work', [{ value: json({ n: 0 }) }, { value: json({ n: 1, hold: true }) }, { value: json({ n: 2 }) }]);
  await waitFor('first three seen', () => handled(consumer).length === 3);
  await waitFor('0 acked and committed', async () => (await pub.groups('work'))[0]?.committedOffset === 1);

  b.proc.kill('SIGTERM');
  expect(await b.exited).toBe(0);
  await waitFor('client reconnecting', () => pub.status === 'reconnecting');
  // published while the broker is down: waits, then goes through
  const during = pub.produce('work', [{ value: json({ n: 3 }) }]);
  b = await startBroker();
  expect(await during).toEqual([{ topic: 'work', offset: 3 }]);
  await waitFor('consumer reconnected', () => {
    const lost = consumer.lines.findIndex((l: any) => l?.status === 'reconnecting');
    return lost >= 0 && consumer.lines.findLastIndex((l: any) => l?.status === 'connected') > lost;
  });
  await pub.produce('work', [{ value: json({ n: 4 }) }]);

  await waitFor('lag 0 after restart', async () => (await pub.groups('work'))[0]?.lag === 0, 30_000).catch(async e => {
    throw new Error(`${e.message}: groups ${JSON.stringify(await pub.groups('work'))}, consumer said ${JSON.stringify(consumer.lines)}`);
  });
  const offsets = handled(consumer);
  expect(offsets.filter(o => o === 0)).toHaveLength(1); // acked before the restart: never again
  expect(offsets.filter(o => o === 1)).toHaveLength(2); // unacked: delivered again after the restart
  expect(new Set(offsets)).toEqual(new Set([0, 1, 2, 3, 4]));
  b.proc.kill('SIGTERM');
  expect(await b.exited).toBe(0);
});

test('a broker process that stops answering (SIGSTOP) is noticed by the client heartbeat, which reconnects once it answers again', async () => {
  const port = await freePort();
  const b = spawnNode(built('lib/cli/main.js'), ['broker', '--data', tmp.dir + '-hb', '--port', String(port), '--fsync', 'never']);
  await b.waitLine('broker listening', l => typeof l === 'string' && l.includes('listening'));
  const c = client(port, {}, { heartbeatMs: 100, heartbeatMisses: 3 });
  try {
    await c.connect();
    b.proc.kill('SIGSTOP');
    await waitFor('client notices the silence', () => c.status === 'reconnecting');
    b.proc.kill('SIGCONT');
    await waitFor('client back', () => c.status === 'connected');
    expect(await c.produce('hb', [{ value: json(1) }])).toEqual([{ topic: 'hb', offset: 0 }]);
  } finally {
    await c.close();
    b.proc.kill('SIGTERM');
    await b.exited;
    rmSync(tmp.dir + '-hb', { recursive: true, force: true });
  }
});

test('a Nest microservice (LogBusServer) in another process on logbus://: pull, push and RPC, and it rides out a broker restart', async () => {
  await pub.close();
  await broker!.close();
  broker = undefined;
  const port = await freePort();
  url = `logbus://127.0.0.1:${port}`;
  const startBroker = async () => {
    const b = spawnNode(built('lib/cli/main.js'), ['broker', '--data', tmp.dir, '--port', String(port), '--fsync', 'never']);
    await b.waitLine('broker listening', l => typeof l === 'string' && l.includes('listening'));
    return b;
  };
  let b = await startBroker();
  pub = client(port, {}, { outageWaitMs: 20_000 });
  await pub.connect();
  const svc = spawnNode(built('test/wire/fixtures/nest-service.js'), [url, 'billing']);
  await ready(svc);
  const pulled = () => svc.lines.filter((l: any) => typeof l?.pulled === 'number').map((l: any) => l.n as number);
  const nestClient = new LogBusClient({ url, rpcTimeoutMs: 20_000 });
  cleanups.push(() => nestClient.close());
  const double = (n: number) => lastValueFrom(nestClient.send<{ double: number }>('svc.double', n));

  await pub.produce('svc.orders', [{ value: json({ n: 1 }) }, { value: json({ n: 2 }) }]);
  await pub.produce('svc.news', [{ value: json({ n: 1 }) }]);
  await waitFor('pulled 1, 2', () => pulled().length === 2);
  await svc.waitLine('pushed', (l: any) => l?.pushed === 1);
  expect((await double(21)).double).toBe(42);
  await waitFor('committed', async () => (await pub.groups('svc.orders'))[0]?.lag === 0);

  b.proc.kill('SIGTERM');
  expect(await b.exited).toBe(0);
  await svc.waitLine('service reconnecting', (l: any) => l?.status === 'reconnecting');
  b = await startBroker();
  await waitFor('service reconnected', () => svc.lines.findLastIndex((l: any) => l?.status === 'connected') > svc.lines.findIndex((l: any) => l?.status === 'reconnecting'));
  await pub.produce('svc.orders', [{ value: json({ n: 3 }) }]);
  await pub.produce('svc.news', [{ value: json({ n: 2 }) }]);
  await waitFor('pulled 3', () => pulled().includes(3));
  await svc.waitLine('pushed after restart', (l: any) => l?.pushed === 2);
  expect((await double(5)).double).toBe(10);
  expect(pulled().sort()).toEqual([1, 2, 3]); // acked before the restart: not handled again
  svc.proc.kill('SIGTERM');
  expect(await svc.exited).toBe(0);
  b.proc.kill('SIGTERM');
  await b.exited;
});
