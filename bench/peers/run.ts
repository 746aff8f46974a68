// nestjs-logbus side by side with Nest's own transports, through real Nest
// handlers, every server, subscriber and client in its own process.
//
//   npx tsc -p tsconfig.json
//   node .build/bench/peers/run.js [--quick] [--transports tcp,redis,nats,logbus,logbus-broker]
//        [--scenarios events,rpc,fanout,durable,slow] [--reps 3] [--no-raw] [--cpu-prof] [--results-md] [--out FILE]
//
// See bench/peers/README.md for what each column means.
import { fork, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nowMs, rssOf, sleep } from './common.js';
import type { IpcMessage } from './common.js';
import { DURABLE_PUBLISH_TOPIC, DURABLE_TOPIC, EVENT_TOPIC, NATS_URL, REDIS_HOST, REDIS_PORT, loadLogBus, transports } from './transports.js';
import type { Placement, TransportDef } from './transports.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // .build/bench/peers
const REPO = path.resolve(HERE, '..', '..', '..');

// ------------------------------------------------------------------ options
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const opt = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
};
const QUICK = flag('quick');
const num = (name: string, full: number, quick: number) => Number(opt(name, String(QUICK ? quick : full)));

const cfg = {
  reps: num('reps', 3, 1),
  warmupEvents: num('warmup-events', 10000, 5000),
  warmupRpc: num('warmup-rpc', 1000, 1000),
  events: num('events', 100000, 20000),
  eventSizes: opt('event-sizes', '100,1024').split(',').map(Number),
  emitWindow: num('emit-window', 1000, 1000),
  rpcSize: num('rpc-size', 100, 100),
  rpcSeq: num('rpc-seq', 5000, 2000),
  rpcConc: num('rpc-conc', 20000, 10000),
  concurrency: num('concurrency', 100, 100),
  subscribers: num('subscribers', 4, 4),
  fanoutEvents: num('fanout-events', 50000, 5000),
  durableEvents: num('durable-events', 100000, 10000),
  consumers: num('consumers', 2, 2),
  consumeConcurrency: num('consume-concurrency', 64, 64),
  publishInflight: num('publish-inflight', 64, 64),
  slowEvents: num('slow-events', 50000, 10000),
  slowFactor: num('slow-factor', 1000, 1000),
  slowFill: num('slow-fill', 100000, 100000),
  jsN: num('js-n', 100000, 10000),
  idleMs: num('idle-ms', 3000, 3000),
  phaseTimeoutMs: num('phase-timeout-ms', 60000, 30000),
  logbusPort: Number(process.env.BENCH_LOGBUS_PORT ?? 7430),
};
const SCENARIOS = new Set(opt('scenarios', 'events,rpc,fanout,durable,slow').split(','));
const selected = opt('transports', 'tcp,redis,nats,logbus,logbus-broker').split(',').filter(Boolean);
const CPU_PROF = flag('cpu-prof');
const startedAt = new Date().toISOString();
const stamp = startedAt.replace(/[:.]/g, '-');
const PROF_DIR = path.join(REPO, 'bench', 'results', `prof-${stamp}`);
const DATA_ROOT = path.join(REPO, '.build', 'bench-data', `peers-${process.pid}`);

const log = (...a: unknown[]) => console.error('[bench]', ...a);

/**
 * Children run from a snapshot of the build taken at start (.build/lib and
 * .build/bench/peers, same relative layout, so imports and node_modules
 * resolve alike): a rebuild of .build during the run cannot hand half-written
 * modules to processes started later. --no-snapshot runs from .build itself.
 */
const SNAPSHOT = flag('no-snapshot') ? null : path.join(REPO, '.build', `bench-snapshot-${process.pid}`);
const BUILD = SNAPSHOT ?? path.join(REPO, '.build');
const CHILD_DIR = path.join(BUILD, 'bench', 'peers');
function takeSnapshot() {
  if (!SNAPSHOT) return;
  fs.cpSync(path.join(REPO, '.build', 'lib'), path.join(SNAPSHOT, 'lib'), { recursive: true });
  fs.cpSync(HERE, CHILD_DIR, { recursive: true });
}

// ------------------------------------------------------------------ child processes
type Waiter = { match: (m: IpcMessage) => boolean; resolve: (m: IpcMessage) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };

/** A forked bench process: request/response over IPC, matched by type and tag. */
class Child {
  readonly proc: ChildProcess;
  private backlog: IpcMessage[] = [];
  private waiters: Waiter[] = [];
  readonly done = new Map<string, IpcMessage>();
  exited = false;
  fatal?: string;
  /** How long close() waits before SIGKILL (a deliberately blocked subscriber gets less). */
  graceMs = 5000;

  constructor(
    script: string,
    args: string[],
    readonly label: string,
    profile = false,
  ) {
    const execArgv = profile ? ['--cpu-prof', '--cpu-prof-dir', path.join(PROF_DIR, label)] : [];
    this.proc = fork(path.join(CHILD_DIR, script), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    this.proc.on('message', m => this.onMessage(m as IpcMessage));
    this.proc.on('exit', (code, sig) => {
      this.exited = true;
      this.failAll(new Error(`${label} exited (code ${code}, signal ${sig})${this.fatal ? `: ${this.fatal}` : ''}`));
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  private failAll(err: Error) {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private onMessage(m: IpcMessage) {
    if (m?.type === 'events-done' && m.tag) this.done.set(m.tag, m);
    if (m?.type === 'fatal' || m?.type === 'error') {
      this.fatal = String(m.error).split('\n').slice(0, 3).join(' | ');
      this.failAll(new Error(`${this.label}: ${this.fatal}`));
      return;
    }
    const i = this.waiters.findIndex(w => w.match(m));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(m);
    } else if (m?.type !== 'events-done') {
      this.backlog.push(m);
      if (this.backlog.length > 100) this.backlog.shift(); // late replies nobody waits for
    }
  }

  waitFor(type: string, pred: (m: IpcMessage) => boolean = () => true, timeoutMs = cfg.phaseTimeoutMs): Promise<IpcMessage> {
    const match = (m: IpcMessage) => m?.type === type && pred(m);
    const bi = this.backlog.findIndex(match);
    if (bi >= 0) return Promise.resolve(this.backlog.splice(bi, 1)[0]);
    if (this.exited) return Promise.reject(new Error(`${this.label} already exited${this.fatal ? `: ${this.fatal}` : ''}`));
    return new Promise((resolve, reject) => {
      const w: Waiter = { match, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.label}: timeout waiting for ${type}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  send(m: IpcMessage) {
    if (!this.exited && this.proc.connected) this.proc.send(m);
  }

  async close(graceMs = this.graceMs) {
    if (this.exited) return;
    this.send({ type: 'close' });
    const t = Date.now();
    while (!this.exited && Date.now() - t < graceMs) await sleep(25);
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------ deployments
/**
 * Where the bus lives for one scenario of one transport. Nest peers: nothing
 * to start (external broker or none). logbus: a fresh data dir and port per
 * scenario, so scenarios cannot leak state (or a wedged broker) into each
 * other; the broker runs in the first server process (embedded) or in a
 * process of its own (standalone).
 */
interface Deployment {
  /** Placement for the first server process (embeds the broker for `logbus`). */
  host: Placement;
  /** Placement for every other process. */
  peer: Placement;
  /** pid of the broker process (for RSS); embedded: the host child's. */
  brokerPid(hostChild?: Child): number | undefined;
  close(): Promise<void>;
}

async function waitPort(port: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await canConnect('127.0.0.1', port, 300)) return true;
    await sleep(50);
  }
  return false;
}

let portSeq = 0;
async function deploy(name: string, def: TransportDef, scenario: string): Promise<Deployment> {
  if (!def.logbus) {
    const pid = def.broker === 'redis' ? redisPid() : def.broker === 'nats' ? pidByComm('nats-server') : undefined;
    return { host: {}, peer: {}, brokerPid: () => pid, close: async () => undefined };
  }
  const port = cfg.logbusPort + portSeq++;
  const dataDir = path.join(DATA_ROOT, name, scenario);
  const url = `logbus://127.0.0.1:${port}`;
  if (def.logbus === 'inproc') {
    return { host: { hostBroker: true, dataDir }, peer: { dataDir }, brokerPid: hostChild => hostChild?.pid, close: async () => undefined };
  }
  if (def.logbus === 'embedded') {
    return { host: { hostBroker: true, dataDir, port }, peer: { url }, brokerPid: hostChild => hostChild?.pid, close: async () => undefined };
  }
  // Standalone: a broker process of its own, through the CLI when it is built.
  fs.mkdirSync(dataDir, { recursive: true });
  const cli = path.join(BUILD, 'lib', 'cli', 'main.js');
  let proc: ChildProcess;
  let child: Child | undefined;
  const label = `${name}-${scenario}-broker`;
  if (fs.existsSync(cli) && !flag('broker-api')) {
    const profArgs = CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.join(PROF_DIR, label)] : [];
    proc = spawn(process.execPath, [...profArgs, cli, 'broker', '--data', dataDir, '--port', String(port)], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (!(await waitPort(port, 10000))) {
      proc.kill('SIGKILL');
      throw new Error(`logbus broker (CLI) did not listen on ${port} within 10 s`);
    }
  } else {
    child = new Child('broker.js', ['--data', dataDir, '--port', String(port)], label, CPU_PROF);
    await child.waitFor('ready', undefined, 10000);
    proc = child.proc;
  }
  return {
    host: { url },
    peer: { url },
    brokerPid: () => proc.pid,
    close: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise(r => proc.once('exit', r));
      if (child) child.send({ type: 'close' });
      else proc.kill('SIGTERM'); // the CLI closes the broker on SIGTERM
      await Promise.race([exited, sleep(5000)]);
      if (proc.exitCode === null && proc.signalCode === null) {
        log(`${label} did not exit within 5 s of SIGTERM: killed`);
        proc.kill('SIGKILL');
      }
    },
  };
}

// ------------------------------------------------------------------ environment probes
function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise(resolve => {
    const s = net.connect({ host, port });
    const finish = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => finish(false));
    s.once('connect', () => finish(true));
    s.once('error', () => finish(false));
  });
}

function redisPid(): number | undefined {
  const r = spawnSync('redis-cli', ['-h', REDIS_HOST, '-p', String(REDIS_PORT), 'INFO', 'server'], { encoding: 'utf8' });
  const m = /process_id:(\d+)/.exec(r.stdout ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Read-only lookup of a local process by its command name (for its RSS). */
function pidByComm(comm: string): number | undefined {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() === comm) return Number(d);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

const natsHostPort = (() => {
  const u = new URL(NATS_URL);
  return { host: u.hostname, port: Number(u.port || 4222) };
})();

async function brokerReachable(kind: 'redis' | 'nats' | null): Promise<string | null> {
  if (kind === 'redis') return (await canConnect(REDIS_HOST, REDIS_PORT)) ? null : `redis not reachable at ${REDIS_HOST}:${REDIS_PORT}`;
  if (kind === 'nats') return (await canConnect(natsHostPort.host, natsHostPort.port)) ? null : `nats not reachable at ${NATS_URL}`;
  return null;
}

// ------------------------------------------------------------------ measurements
let tagSeq = 0;

interface Delivery {
  n: number;
  size: number;
  receivers: number;
  expected: number;
  delivered: number;
  calls: number;
  /** distinct messages handled by each receiver (how a group shared the work) */
  perReceiver: number[];
  lost: number;
  spanMs: number;
  deliveredPerSec: number;
  emitPerSec: number;
}

/**
 * One publisher emits n events; `receivers` count them. mode 'each': every
 * receiver should get all n (push); 'shared': the receivers share n between
 * them (consumer group). `bystanders` are armed too but not waited for (the
 * slow subscriber). Rate = unique deliveries / (last handler call - first emit).
 */
async function deliveryRun(
  receivers: Child[],
  client: Child,
  o: { topic: string; n: number; size: number; mode: 'each' | 'shared'; bystanders?: Child[]; slowMs?: number },
): Promise<Delivery> {
  const tag = `d${++tagSeq}`;
  const each = o.mode === 'each';
  for (const r of receivers) r.send({ type: 'expect', tag, n: each ? o.n : 0, seqSpace: o.n });
  for (const b of o.bystanders ?? []) b.send({ type: 'expect', tag, n: 0, seqSpace: o.n, slowMs: o.slowMs ?? 0 });
  await Promise.all(receivers.map(r => r.waitFor('expect-ok', m => m.tag === tag)));
  client.send({ type: 'events', tag, topic: o.topic, n: o.n, size: o.size, window: cfg.emitWindow });
  const sentP = client.waitFor('events-sent', m => m.tag === tag);
  sentP.catch(() => undefined);

  const expected = each ? o.n * receivers.length : o.n;
  const last = receivers.map(() => ({ count: 0, calls: 0, lastAt: 0 }));
  const total = () => receivers.reduce((a, r, i) => a + Number((r.done.get(tag) ?? last[i]).count), 0);
  const deadline = nowMs() + cfg.phaseTimeoutMs;
  let seen = -1;
  let idleSince = nowMs();
  let sent: IpcMessage | undefined;
  while (true) {
    await sleep(50);
    if (!sent) sent = await Promise.race([sentP, sleep(0).then(() => undefined)]);
    const pending = receivers.map((r, i) => ({ r, i })).filter(({ r }) => !r.done.has(tag));
    await Promise.all(
      pending.map(async ({ r, i }) => {
        r.send({ type: 'report' });
        const m = await r.waitFor('report', x => x.tag === tag, 2000).catch(() => null);
        if (m) last[i] = { count: Number(m.count), calls: Number(m.calls), lastAt: Number(m.lastAt) };
      }),
    );
    const t = total();
    if (t >= expected && sent) break;
    if (t !== seen) {
      seen = t;
      idleSince = nowMs();
    }
    if (nowMs() > deadline || (sent && nowMs() - idleSince > cfg.idleMs)) break;
  }
  sent ??= await sentP;
  const per = receivers.map((r, i) => {
    const d = r.done.get(tag);
    return d ? { count: Number(d.count), calls: Number(d.calls), lastAt: Number(d.lastAt) } : last[i];
  });
  const delivered = Math.min(expected, per.reduce((a, p) => a + p.count, 0));
  const calls = per.reduce((a, p) => a + p.calls, 0);
  const spanMs = Math.max(...per.map(p => p.lastAt || 0)) - Number(sent.t0);
  return {
    n: o.n,
    size: o.size,
    receivers: receivers.length,
    expected,
    delivered,
    calls,
    perReceiver: per.map(p => p.count),
    lost: expected - delivered,
    spanMs,
    deliveredPerSec: delivered / (spanMs / 1000),
    emitPerSec: o.n / ((Number(sent.tEmitDone) - Number(sent.t0)) / 1000),
  };
}

async function clientCall(client: Child, type: string, reply: string, extra: Record<string, unknown>): Promise<Record<string, number>> {
  const tag = `c${++tagSeq}`;
  client.send({ type, tag, ...extra });
  const { type: _t, tag: _g, ...r } = await client.waitFor(reply, m => m.tag === tag);
  return r as Record<string, number>;
}

/**
 * Repetitions inside one scene. With --no-interleave: cfg.reps of them, back
 * to back. By default each scene measures once and the whole sweep over the
 * transports runs cfg.reps times (rounds, merged by mergeRounds), so a burst
 * of load on a shared machine hits every transport alike, not one of them.
 */
const INTERLEAVE = !flag('no-interleave');
const ROUNDS = INTERLEAVE ? cfg.reps : 1;
const innerReps = INTERLEAVE ? 1 : cfg.reps;

/** The run with the median `key`, every run's value in `reps`, losses summed. */
function medianOf<T extends Record<string, any>>(runs: T[], key: string): T & { reps: number[]; lostAllReps?: number } {
  const sorted = [...runs].sort((a, b) => a[key] - b[key]);
  const med = sorted[Math.floor((sorted.length - 1) / 2)];
  const out: any = { ...med, reps: runs.map(r => r[key]) };
  if ('lost' in med) out.lostAllReps = runs.reduce((a, r) => a + (r.lostAllReps ?? r.lost), 0);
  return out;
}

async function repeat<T extends Record<string, any>>(fn: () => Promise<T>, key: keyof T & string): Promise<T & { reps: number[]; lostAllReps?: number }> {
  const runs: T[] = [];
  for (let i = 0; i < innerReps; i++) runs.push(await fn());
  return medianOf(runs, key);
}

/** One transport's rounds into one result: per figure, the round with the median. */
function mergeRounds(rounds: Res[]): Res {
  if (rounds.length === 1) return rounds[0];
  const ok = rounds.filter(r => !r.skipped);
  if (ok.length === 0) return rounds[0];
  const out: Res = { transport: ok[0].transport, rounds: rounds.length, errors: {}, wallSec: 0 };
  rounds.forEach((r, i) => {
    out.wallSec += r.wallSec ?? 0;
    for (const [k, e] of Object.entries(r.errors ?? {})) out.errors[`${k} (round ${i + 1})`] = e;
  });
  const pick = (get: (r: Res) => any, key: string) => {
    const found = ok.map(get).filter(Boolean);
    const measured = found.filter(o => !o.na && typeof o[key] === 'number');
    return measured.length ? medianOf(measured, key) : found[0];
  };
  const set = (k: string, v: unknown) => {
    if (v !== undefined) out[k] = v;
  };
  if (ok.some(r => r.events)) out.events = Object.fromEntries(cfg.eventSizes.map(size => [size, pick(r => r.events?.[size], 'deliveredPerSec')]));
  set('rpcSeq', pick(r => r.rpcSeq, 'p50Ms'));
  set('rpcConc', pick(r => r.rpcConc, 'rps'));
  set('fanout', pick(r => r.fanout, 'deliveredPerSec'));
  set('durablePull', pick(r => r.durablePull, 'deliveredPerSec'));
  set('durablePublish', pick(r => r.durablePublish, 'rps'));
  const slows = ok.map(r => r.slow).filter(Boolean);
  if (slows.some(x => x.na)) out.slow = slows[0];
  else if (slows.length) {
    const alone = pick(r => r.slow?.alone, 'deliveredPerSec');
    const withSlow = pick(r => r.slow?.withSlow, 'deliveredPerSec');
    const withPeer = pick(r => r.slow?.withPeer, 'deliveredPerSec');
    const peakOf = (f: string) => Math.max(...slows.map(x => x.brokerRssMB?.[f] ?? -Infinity));
    out.slow = {
      alone,
      withPeer,
      withSlow,
      slowMsPerMessage: medianOf(slows, 'slowMsPerMessage').slowMsPerMessage,
      changePct: ((withSlow.deliveredPerSec - alone.deliveredPerSec) / alone.deliveredPerSec) * 100,
      changeVsPeerPct: ((withSlow.deliveredPerSec - withPeer.deliveredPerSec) / withPeer.deliveredPerSec) * 100,
      changePctRounds: slows.map(x => x.changePct),
      brokerRssMB: { before: slows[0].brokerRssMB?.before, peakAlone: peakOf('peakAlone'), peak: peakOf('peak') },
      stats: slows[slows.length - 1].stats,
    };
  }
  return out;
}

/** Track the peak RSS of a process while `fn` runs. */
async function withRss<T>(pid: number | undefined, fn: () => Promise<T>): Promise<{ result: T; before: number | null; peakMB: number | null; after: number | null }> {
  const read = () => (pid ? (rssOf(pid)?.rssMB ?? null) : null);
  const before = read();
  let peak = before;
  const timer = setInterval(() => {
    const v = read();
    if (v != null && (peak == null || v > peak)) peak = v;
  }, 100);
  try {
    const result = await fn();
    return { result, before, peakMB: peak, after: read() };
  } finally {
    clearInterval(timer);
  }
}

// ------------------------------------------------------------------ scenarios
type Res = Record<string, any>;

/** The processes of one scenario of one transport, and their deployment. */
class Scene {
  readonly children: Child[] = [];
  private constructor(
    readonly name: string,
    readonly scenario: string,
    readonly dep: Deployment,
  ) {}
  static async open(name: string, scenario: string): Promise<Scene> {
    return new Scene(name, scenario, await deploy(name, transports[name], scenario));
  }
  private prof() {
    return CPU_PROF && !!transports[this.name].logbus;
  }
  async server(role: 'server' | 'subscriber' | 'consumer', i: number, hostBroker: boolean): Promise<Child> {
    const placement = hostBroker ? this.dep.host : this.dep.peer;
    const args = ['--transport', this.name, '--role', role, '--placement', JSON.stringify(placement), '--concurrency', String(cfg.consumeConcurrency)];
    const c = new Child('server.js', args, `${this.name}-${this.scenario}-${role}${i}`, this.prof());
    this.children.push(c);
    await c.waitFor('ready');
    return c;
  }
  async client(label = 'client'): Promise<Child> {
    // logbus-inproc: the first server process is its own publisher.
    if (transports[this.name].logbus === 'inproc' && this.children.length) return this.children[0];
    const args = ['--transport', this.name, '--placement', JSON.stringify(this.dep.peer)];
    const c = new Child('client.js', args, `${this.name}-${this.scenario}-${label}`, this.prof());
    this.children.push(c);
    await c.waitFor('ready');
    return c;
  }
  async close() {
    // Clients first, the broker-hosting server (first started) last, then the broker.
    for (const c of [...this.children].reverse()) await c.close();
    await this.dep.close();
  }
}

/** The first server process embeds the broker. */
const isEmbedded = (name: string) => transports[name].logbus === 'embedded' || transports[name].logbus === 'inproc';

async function scenarioEventsRpc(name: string, res: Res) {
  const s = await Scene.open(name, 'events');
  try {
    const server = await s.server('server', 0, isEmbedded(name));
    const client = await s.client();
    if (SCENARIOS.has('events')) {
      await deliveryRun([server], client, { topic: EVENT_TOPIC, n: cfg.warmupEvents, size: 100, mode: 'each' });
      res.events = {};
      for (const size of cfg.eventSizes) {
        log(`${name}: events n=${cfg.events} size=${size}`);
        res.events[size] = await repeat(() => deliveryRun([server], client, { topic: EVENT_TOPIC, n: cfg.events, size, mode: 'each' }), 'deliveredPerSec');
      }
    }
    if (SCENARIOS.has('rpc')) {
      await clientCall(client, 'rpc-seq', 'rpc-result', { n: cfg.warmupRpc, size: cfg.rpcSize });
      log(`${name}: rpc one at a time n=${cfg.rpcSeq}`);
      res.rpcSeq = await repeat(() => clientCall(client, 'rpc-seq', 'rpc-result', { n: cfg.rpcSeq, size: cfg.rpcSize }), 'p50Ms');
      log(`${name}: rpc ${cfg.concurrency} in flight n=${cfg.rpcConc}`);
      res.rpcConc = await repeat(() => clientCall(client, 'rpc-conc', 'rpc-result', { n: cfg.rpcConc, size: cfg.rpcSize, concurrency: cfg.concurrency }), 'rps');
      // A failed request still counts in req/s: say so next to the figure.
      for (const [k, r] of [['rpc seq', res.rpcSeq], ['rpc conc', res.rpcConc]] as const) {
        if (r.errors > 0) res.errors[k] = `${r.errors} of ${r.count} requests failed or echoed wrong: ${r.firstError ?? 'wrong echo'}`;
      }
    }
  } finally {
    await s.close();
  }
}

async function scenarioFanout(name: string, res: Res) {
  const s = await Scene.open(name, 'fanout');
  try {
    const subs: Child[] = [];
    for (let i = 0; i < cfg.subscribers; i++) subs.push(await s.server('subscriber', i, i === 0 && isEmbedded(name)));
    const pub = await s.client('publisher');
    await sleep(200); // let every subscription reach the broker
    await deliveryRun(subs, pub, { topic: EVENT_TOPIC, n: cfg.warmupEvents, size: 100, mode: 'each' });
    log(`${name}: fan-out to ${cfg.subscribers} n=${cfg.fanoutEvents}`);
    res.fanout = await repeat(() => deliveryRun(subs, pub, { topic: EVENT_TOPIC, n: cfg.fanoutEvents, size: 100, mode: 'each' }), 'deliveredPerSec');
  } finally {
    await s.close();
  }
}

async function scenarioDurable(name: string, res: Res) {
  const s = await Scene.open(name, 'durable');
  try {
    const consumers: Child[] = [];
    const count = transports[name].logbus === 'inproc' ? 1 : cfg.consumers; // one process can be only one member
    for (let i = 0; i < count; i++) consumers.push(await s.server('consumer', i, i === 0 && isEmbedded(name)));
    const pub = await s.client('publisher');
    await deliveryRun(consumers, pub, { topic: DURABLE_TOPIC, n: cfg.warmupEvents, size: 100, mode: 'shared' });
    log(`${name}: durable pull, group of ${count} n=${cfg.durableEvents}`);
    const run = () => deliveryRun(consumers, pub, { topic: DURABLE_TOPIC, n: cfg.durableEvents, size: 100, mode: 'shared' });
    res.durablePull = await repeat(run, 'deliveredPerSec');
    // Publish-only on a topic nobody consumes: the same shape as JetStream's baseline.
    log(`${name}: durable publish, ${cfg.publishInflight} in flight n=${cfg.jsN}`);
    res.durablePublish = await repeat(
      () => clientCall(pub, 'publish-c', 'publish-result', { topic: DURABLE_PUBLISH_TOPIC, n: cfg.jsN, size: 100, concurrency: cfg.publishInflight }),
      'rps',
    );
  } finally {
    await s.close();
  }
}

async function scenarioSlow(name: string, res: Res) {
  const s = await Scene.open(name, 'slow');
  try {
    const fast = await s.server('subscriber', 0, isEmbedded(name));
    const pub = await s.client('publisher');
    const brokerPid = s.dep.brokerPid(fast);
    await sleep(200);
    const run = (bystanders: Child[], slowMs: number, n = cfg.slowEvents) => () =>
      deliveryRun([fast], pub, { topic: EVENT_TOPIC, n, size: 100, mode: 'each', bystanders, slowMs });
    await run([], 0)();
    log(`${name}: fast subscriber alone n=${cfg.slowEvents}`);
    const aloneRss = await withRss(brokerPid, () => repeat(run([], 0), 'deliveredPerSec'));
    const alone = aloneRss.result;
    // 1000x slower than the publisher: per-message time = factor / publisher rate.
    const slowMs = Math.max(0.01, (cfg.slowFactor * 1000) / alone.emitPerSec);
    const slow = await s.server('subscriber', 1, false);
    slow.graceMs = 1000;
    await sleep(200);
    // The same second subscriber at full speed first: what a second subscriber costs
    // by itself, so that the slow run shows what slowness adds.
    log(`${name}: fast subscriber beside a second fast one`);
    const withPeer = await repeat(run([slow], 0), 'deliveredPerSec');
    log(`${name}: fast subscriber beside a slow one (${slowMs.toFixed(2)} ms per message), after ${cfg.slowFill} events to fill its buffers`);
    // Unmeasured fill first: the slow one's buffers (kernel, broker) are full and
    // the broker is dropping for it (or cutting it off) while the fast one is measured.
    const withSlow = await withRss(brokerPid, async () => {
      if (cfg.slowFill > 0) await run([slow], slowMs, cfg.slowFill)();
      return repeat(run([slow], slowMs), 'deliveredPerSec');
    });
    let stats: unknown = null;
    if (transports[name].logbus) stats = (await clientCall(pub, 'stats', 'stats', {}).catch(() => ({ stats: null }))).stats ?? null;
    res.slow = {
      alone,
      withPeer,
      withSlow: withSlow.result,
      slowMsPerMessage: slowMs,
      changePct: ((withSlow.result.deliveredPerSec - alone.deliveredPerSec) / alone.deliveredPerSec) * 100,
      changeVsPeerPct: ((withSlow.result.deliveredPerSec - withPeer.deliveredPerSec) / withPeer.deliveredPerSec) * 100,
      brokerPid,
      // Peak while the fast one runs alone vs beside the slow one: the growth the slow one causes.
      brokerRssMB: { before: aloneRss.before, peakAlone: aloneRss.peakMB, peak: withSlow.peakMB, after: withSlow.after },
      stats,
    };
  } finally {
    await s.close(); // the slow subscriber may be blocked: close() SIGKILLs it after the grace period
  }
}

async function benchTransport(name: string): Promise<Res> {
  const res: Res = { transport: name };
  const def = transports[name];
  if (!def) return { ...res, skipped: 'unknown transport' };
  const unreachable = await brokerReachable(def.broker);
  if (unreachable) return { ...res, skipped: unreachable };
  if (def.logbus) {
    try {
      await loadLogBus(); // says what lib is still missing
    } catch (err: any) {
      return { ...res, skipped: String(err?.message ?? err) };
    }
  }
  const t0 = nowMs();
  res.errors = {};
  const guarded = async (key: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err: any) {
      res.errors[key] = String(err?.message ?? err);
      log(`${name}: ${key} FAILED: ${res.errors[key]}`);
    }
  };
  if (SCENARIOS.has('events') || SCENARIOS.has('rpc')) await guarded('events/rpc', () => scenarioEventsRpc(name, res));
  if (SCENARIOS.has('fanout')) {
    if (def.fanout) await guarded('fanout', () => scenarioFanout(name, res));
    else res.fanout = { na: def.logbus ? 'one process' : 'a TCP client talks to one server' };
  }
  if (SCENARIOS.has('durable')) {
    if (def.durable) await guarded('durable', () => scenarioDurable(name, res));
    else res.durablePull = { na: 'no durable consumer groups' };
  }
  if (SCENARIOS.has('slow')) {
    if (def.fanout) await guarded('slow', () => scenarioSlow(name, res));
    else res.slow = { na: def.logbus ? 'one process' : 'a TCP client talks to one server' };
  }
  res.wallSec = (nowMs() - t0) / 1000;
  return res;
}

// ------------------------------------------------------------------ JetStream reference
async function jetstreamReference(): Promise<Res | null> {
  if (!(await canConnect(natsHostPort.host, natsHostPort.port))) return null;
  log(`JetStream file publish, ${cfg.publishInflight} in flight n=${cfg.jsN}`);
  const once = async () => {
    const r = spawnSync(process.execPath, [path.join(CHILD_DIR, 'jetstream.js'), '--n', String(cfg.jsN), '--size', '100', '--inflight', String(cfg.publishInflight), '--storage', 'file'], {
      encoding: 'utf8',
      timeout: 120000,
    });
    const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`jetstream.js failed: ${(r.stderr || r.stdout || '').slice(-300)}`);
    }
  };
  try {
    return await repeat(once, 'msgsPerSec');
  } catch (err: any) {
    return { error: String(err?.message ?? err) };
  }
}

// ------------------------------------------------------------------ report
function pkgVersion(name: string): string | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}
function versions() {
  const cmd = (c: string, a: string[]) => {
    const r = spawnSync(c, a, { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  const redisInfo = cmd('redis-cli', ['-h', REDIS_HOST, '-p', String(REDIS_PORT), 'INFO', 'server']);
  return {
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    redisServer: redisInfo ? (/redis_version:(\S+)/.exec(redisInfo)?.[1] ?? null) : null,
    natsServer: cmd('nats-server', ['--version']),
    nestjsLogbus: JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).version,
    gitCommit: cmd('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']),
    packages: Object.fromEntries(['@nestjs/core', '@nestjs/microservices', 'rxjs', 'ioredis', '@nats-io/transport-node', '@nats-io/jetstream', 'typescript'].map(p => [p, pkgVersion(p)])),
  };
}

const f0 = (x: unknown) => (typeof x !== 'number' || !Number.isFinite(x) ? '-' : Math.round(x).toLocaleString('en-US'));
const f2 = (x: unknown) => (typeof x !== 'number' || !Number.isFinite(x) ? '-' : x.toFixed(2));
const f1 = (x: unknown) => (typeof x !== 'number' || !Number.isFinite(x) ? '-' : x.toFixed(1));

function table(rows: string[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map(r => String(r[c] ?? '').length)));
  return rows.map(r => r.map((v, c) => (c === 0 ? String(v ?? '').padEnd(w[c]) : String(v ?? '').padStart(w[c]))).join('  ')).join('\n');
}

/** Value, 'n/a' when the transport cannot do it, 'err' when the scenario failed, '-' when not run. */
function cell(r: Res, obj: any, fmt: (x: unknown) => string, v: (o: any) => unknown, errKey: string): string {
  if (obj?.na) return 'n/a';
  if (obj) return fmt(v(obj));
  return r.errors?.[errKey] ? 'err' : '-';
}

function lostOf(r: Res): number {
  const parts = [...Object.values(r.events ?? {}), r.fanout, r.durablePull, r.slow?.alone].filter((x: any) => x && !x.na) as any[];
  return parts.reduce((a, e) => a + (e.lostAllReps ?? e.lost ?? 0), 0);
}

interface Ratio {
  what: string;
  transport: string;
  ratio: number | null;
  target: string;
  ok: boolean | null;
}

function ratios(results: Res[], js: Res | null): Ratio[] {
  const by = (n: string) => results.find(r => r.transport === n && !r.skipped);
  const tcp = by('tcp');
  const redis = by('redis');
  const nats = by('nats');
  const out: Ratio[] = [];
  const add = (what: string, transport: string, a: unknown, b: unknown, target: number, cmp: 'ge' | 'le' = 'ge', label = `>= ${target}x`) => {
    const ratio = typeof a === 'number' && typeof b === 'number' && b > 0 && Number.isFinite(a) ? a / b : null;
    out.push({ what, transport, ratio, target: label, ok: ratio == null ? null : cmp === 'ge' ? ratio >= target : ratio <= target });
  };
  for (const name of ['logbus', 'logbus-broker']) {
    const l = by(name);
    if (!l) continue;
    add('events 100 B vs Nest TCP', name, l.events?.[100]?.deliveredPerSec, tcp?.events?.[100]?.deliveredPerSec, 3);
    add('events 100 B vs Nest Redis', name, l.events?.[100]?.deliveredPerSec, redis?.events?.[100]?.deliveredPerSec, 5);
    add('fan-out x4 vs Nest NATS', name, l.fanout?.deliveredPerSec, nats?.fanout?.deliveredPerSec, 4);
    add('RPC one at a time p50 / Nest TCP p50', name, l.rpcSeq?.p50Ms, tcp?.rpcSeq?.p50Ms, 1, 'le', '<= 1x');
    add('RPC 100 in flight vs Nest TCP', name, l.rpcConc?.rps, tcp?.rpcConc?.rps, 2);
    add('durable pull x2 vs JetStream file publish c64', name, l.durablePull?.deliveredPerSec, js?.msgsPerSec, 5);
    for (const [what, change] of [
      ['slow subscriber: fast one\'s rate vs alone', l.slow?.changePct],
      ['slow subscriber: fast one\'s rate vs fast peer', l.slow?.changeVsPeerPct],
    ] as const) {
      out.push({ what, transport: name, ratio: typeof change === 'number' ? change : null, target: '|change| < 10 %', ok: typeof change === 'number' ? Math.abs(change) < 10 : null });
    }
  }
  return out;
}

function report(results: Res[], js: Res | null): { text: string; ratios: Ratio[] } {
  const out: string[] = [];
  const say = (line: string) => out.push(line);
  const sizes = cfg.eventSizes;
  const head1 = ['transport', ...sizes.map(s => `events ${s}B/s`), 'rpc seq p50 ms', 'p99 ms', `rpc c${cfg.concurrency} req/s`, 'p50 ms', 'p99 ms', `fan-out x${cfg.subscribers} deliv/s`, 'lost'];
  const rows1 = [head1];
  const head2 = ['transport', `durable pull x${cfg.consumers} msg/s`, 'dup', `durable pub c${cfg.publishInflight} msg/s`, 'fast alone /s', 'w/ fast peer /s', 'w/ slow peer /s', 'vs alone %', 'vs fast peer %', 'slow ms/msg', 'broker RSS MB start/alone/w slow'];
  const rows2 = [head2];
  for (const r of results) {
    if (r.skipped) {
      rows1.push([r.transport, `skipped: ${r.skipped}`.slice(0, 90), ...Array(head1.length - 2).fill('')]);
      continue;
    }
    rows1.push([
      r.transport,
      ...sizes.map(s => cell(r, r.events?.[s], f0, o => o.deliveredPerSec, 'events/rpc')),
      cell(r, r.rpcSeq, f2, o => o.p50Ms, 'events/rpc'),
      cell(r, r.rpcSeq, f2, o => o.p99Ms, 'events/rpc'),
      cell(r, r.rpcConc, f0, o => o.rps, 'events/rpc'),
      cell(r, r.rpcConc, f2, o => o.p50Ms, 'events/rpc'),
      cell(r, r.rpcConc, f2, o => o.p99Ms, 'events/rpc'),
      cell(r, r.fanout, f0, o => o.deliveredPerSec, 'fanout'),
      String(lostOf(r)),
    ]);
    const rss = r.slow?.brokerRssMB;
    rows2.push([
      r.transport,
      cell(r, r.durablePull, f0, o => o.deliveredPerSec, 'durable') + (r.durablePull?.receivers && r.durablePull.receivers !== cfg.consumers ? ` (x${r.durablePull.receivers})` : ''),
      cell(r, r.durablePull, String, o => o.calls - o.delivered, 'durable'),
      r.durablePull?.na ? 'n/a' : cell(r, r.durablePublish, f0, o => o.rps, 'durable'),
      cell(r, r.slow, f0, o => o.alone?.deliveredPerSec, 'slow'),
      cell(r, r.slow, f0, o => o.withPeer?.deliveredPerSec, 'slow'),
      cell(r, r.slow, f0, o => o.withSlow?.deliveredPerSec, 'slow'),
      cell(r, r.slow, f1, o => o.changePct, 'slow'),
      cell(r, r.slow, f1, o => o.changeVsPeerPct, 'slow'),
      cell(r, r.slow, f2, o => o.slowMsPerMessage, 'slow'),
      r.slow?.na ? 'n/a' : rss ? `${f0(rss.before)} / ${f0(rss.peakAlone)} / ${f0(rss.peak)}` : '-',
    ]);
  }
  if (js) rows2.push(['JetStream file publish (raw)', '', '', js.error ? 'err' : f0(js.msgsPerSec), ...Array(head2.length - 4).fill('')]);
  const how = INTERLEAVE && cfg.reps > 1 ? `median of ${cfg.reps} interleaved rounds` : `median of ${cfg.reps} rep(s)`;
  say(`\nNest transports, one process per server/subscriber/client; ${how}${QUICK ? ' (quick)' : ''}`);
  say(table(rows1));
  say('');
  say(table(rows2));
  const rs = ratios(results, js);
  if (rs.length) {
    say('\nTargets (issue 5)');
    const rrows = [['target', 'transport', 'measured', 'goal', 'met']];
    for (const x of rs) rrows.push([x.what, x.transport, x.ratio == null ? '-' : x.what.startsWith('slow') ? `${x.ratio.toFixed(1)} %` : `${x.ratio.toFixed(2)}x`, x.target, x.ok == null ? '-' : x.ok ? 'yes' : 'NO']);
    say(table(rrows));
  }
  for (const r of results) for (const [k, e] of Object.entries(r.errors ?? {})) say(`error ${r.transport} ${k}: ${e}`);
  return { text: out.join('\n'), ratios: rs };
}

// ------------------------------------------------------------------ main
async function main() {
  log(`node ${process.version}, ${os.cpus().length} CPUs, transports: ${selected.join(', ')}${QUICK ? ' (quick)' : ''}, reps ${cfg.reps}`);
  const results: Res[] = [];
  let js: Res | null = null;
  const wantJs = !flag('no-raw') && SCENARIOS.has('durable');
  const jsRounds: Res[] = [];
  const cleanUp = () => {
    fs.rmSync(DATA_ROOT, { recursive: true, force: true });
    if (SNAPSHOT) fs.rmSync(SNAPSHOT, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanUp();
    process.exit(130);
  });
  takeSnapshot();
  try {
    const rounds = new Map<string, Res[]>(selected.map(n => [n, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const name of selected) {
        log(`=== ${name}${ROUNDS > 1 ? ` (round ${round} of ${ROUNDS})` : ''}`);
        const r = await benchTransport(name);
        rounds.get(name)!.push(r);
        if (r.skipped) log(`${name}: skipped: ${r.skipped}`);
      }
      if (wantJs) {
        const j = await jetstreamReference();
        if (j) jsRounds.push(j);
      }
    }
    for (const name of selected) results.push(mergeRounds(rounds.get(name)!));
    const measured = jsRounds.filter(j => typeof j.msgsPerSec === 'number');
    js = measured.length ? medianOf(measured, 'msgsPerSec') : (jsRounds[0] ?? null);
  } finally {
    cleanUp();
  }
  const { text, ratios: rs } = report(results, js);
  console.log(text);
  const command = `node .build/bench/peers/run.js ${argv.join(' ')}`.trim();
  const v = versions();
  const summary = { startedAt, command, quick: QUICK, config: cfg, versions: v, results, jetstream: js, ratios: rs };
  if (flag('results-md')) writeResultsMd(text, command, v);
  const outFile = opt('out', path.join(REPO, 'bench', 'results', `peers-${stamp}.json`));
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify(summary, null, 2));
  console.log(`\nfull results: ${path.relative(process.cwd(), outFile)}${CPU_PROF ? `\ncpu profiles: ${path.relative(process.cwd(), PROF_DIR)}` : ''}`);
  console.log(`BENCH_JSON ${JSON.stringify(summary)}`);
}

main().then(
  () => process.exit(0),
  err => {
    console.error('[bench] fatal', err);
    process.exit(1);
  },
);

/** bench/RESULTS.md: the latest figures with the machine, the versions and the command. */
function writeResultsMd(text: string, command: string, v: ReturnType<typeof versions>) {
  const file = path.join(REPO, 'bench', 'RESULTS.md');
  const md = [
    '# Benchmark results',
    '',
    `Latest \`bench/peers\` run, ${startedAt}. Command: \`npx tsc -p tsconfig.json && ${command}\``,
    '',
    `Machine: ${v.cpus} x ${v.cpuModel}, ${v.os}, Node ${v.node}. Redis ${v.redisServer ?? '?'}, ${v.natsServer ?? 'nats-server ?'}, commit ${v.gitCommit ?? '?'}.`,
    `Packages: ${Object.entries(v.packages).map(([k, x]) => `${k} ${x}`).join(', ')}.`,
    '',
    'Columns: see bench/peers/README.md.',
    '',
    '```',
    text.trim(),
    '```',
    '',
  ].join('\n');
  fs.writeFileSync(file, md);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}
