// nestjs-logbus side by side with Nest's own transports, through real Nest
// handlers, every server, subscriber and client in its own process.
//
//   npx tsc -p tsconfig.json
//   node .build/bench/peers/run.js [--quick] [--transports tcp,redis,nats,logbus,logbus-broker]
//        [--scenarios events,rpc,fanout,durable,slow] [--reps 3] [--no-interleave] [--no-raw]
//        [--cpu-prof] [--results-md] [--no-snapshot] [--out FILE]
//
// See bench/peers/README.md for what each column means.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuMsOf, nowMs, rssOf, sleep } from './common.js';
import type { IpcMessage } from './common.js';
import { Child } from './child.js';
import { CHILD_DIR, CPU_PROF, DATA_ROOT, QUICK, REPO, ROUNDS, SCENARIOS, argv, cfg, flag, innerReps, log, opt, selected, stamp, startedAt, takeSnapshot, SNAPSHOT, PROF_DIR } from './config.js';
import type { Res } from './config.js';
import { brokerReachable, canConnect, deploy, natsHostPort } from './deploy.js';
import type { Deployment } from './deploy.js';
import { report, versions, writeResultsMd } from './report.js';
import { DURABLE_PUBLISH_TOPIC, DURABLE_TOPIC, EVENT_TOPIC, loadLogBus, transports } from './transports.js';

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
  /** when each receiver handled its last message, ms after the first emit */
  finishMs: (number | null)[];
  lost: number;
  spanMs: number;
  deliveredPerSec: number;
  emitPerSec: number;
  cpu: CpuSplit;
}

/** CPU ms each process used during a measurement (user + system), and µs per handled message over all of them. */
interface CpuSplit {
  publisher: number | null;
  receivers: (number | null)[];
  /** a broker process of its own (standalone logbus, Redis, NATS); embedded: counted in receivers[0] */
  broker: number | null;
  usPerMessage: number | null;
}

/** Starts counting the CPU of a measurement's processes; call the result when it ends. */
function cpuMeter(publisher: Child, receivers: Child[], brokerPid: number | undefined): (handled: number) => CpuSplit {
  const pids = receivers.map(r => r.pid);
  const broker = brokerPid !== undefined && !pids.includes(brokerPid) && brokerPid !== publisher.pid ? brokerPid : undefined;
  const read = () => ({ p: cpuMsOf(publisher.pid), r: pids.map(cpuMsOf), b: broker === undefined ? null : cpuMsOf(broker) });
  const start = read();
  const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : b - a);
  return handled => {
    const end = read();
    const split = { publisher: diff(start.p, end.p), receivers: start.r.map((v, i) => diff(v, end.r[i])), broker: diff(start.b, end.b) };
    const all = [split.publisher, ...split.receivers, split.broker].filter((v): v is number => v !== null);
    return { ...split, usPerMessage: handled > 0 ? (all.reduce((a, v) => a + v, 0) * 1000) / handled : null };
  };
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
  o: { topic: string; n: number; size: number; mode: 'each' | 'shared'; bystanders?: Child[]; slowMs?: number; brokerPid?: number },
): Promise<Delivery> {
  const tag = `d${++tagSeq}`;
  const each = o.mode === 'each';
  for (const r of receivers) r.send({ type: 'expect', tag, n: each ? o.n : 0, seqSpace: o.n });
  for (const b of o.bystanders ?? []) b.send({ type: 'expect', tag, n: 0, seqSpace: o.n, slowMs: o.slowMs ?? 0 });
  await Promise.all(receivers.map(r => r.waitFor('expect-ok', m => m.tag === tag)));
  const cpu = cpuMeter(client, [...receivers, ...(o.bystanders ?? [])], o.brokerPid);
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
    finishMs: per.map(p => (p.lastAt ? Math.round((p.lastAt - Number(sent.t0)) * 10) / 10 : null)),
    lost: expected - delivered,
    spanMs,
    deliveredPerSec: delivered / (spanMs / 1000),
    emitPerSec: o.n / ((Number(sent.tEmitDone) - Number(sent.t0)) / 1000),
    cpu: cpu(calls),
  };
}

async function clientCall(client: Child, type: string, reply: string, extra: Record<string, unknown>, server?: Child, brokerPid?: number): Promise<Record<string, any>> {
  const tag = `c${++tagSeq}`;
  const cpu = server ? cpuMeter(client, [server], brokerPid) : undefined;
  client.send({ type, tag, ...extra });
  const { type: _t, tag: _g, ...r } = await client.waitFor(reply, m => m.tag === tag);
  return cpu ? { ...r, cpu: cpu(Number(r.count)) } : r;
}


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
      // Paired: each round measures alone and beside the slow peer in the same processes, back to back;
      // the median of those changes, not the change between medians of different rounds.
      changePct: medianOf(slows, 'changePct').changePct,
      changeVsPeerPct: medianOf(slows, 'changeVsPeerPct').changeVsPeerPct,
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
        res.events[size] = await repeat(() => deliveryRun([server], client, { topic: EVENT_TOPIC, n: cfg.events, size, mode: 'each', brokerPid: s.dep.brokerPid(server) }), 'deliveredPerSec');
      }
    }
    if (SCENARIOS.has('rpc')) {
      await clientCall(client, 'rpc-seq', 'rpc-result', { n: cfg.warmupRpc, size: cfg.rpcSize });
      log(`${name}: rpc one at a time n=${cfg.rpcSeq}`);
      res.rpcSeq = await repeat(() => clientCall(client, 'rpc-seq', 'rpc-result', { n: cfg.rpcSeq, size: cfg.rpcSize }, server, s.dep.brokerPid(server)), 'p50Ms');
      log(`${name}: rpc ${cfg.concurrency} in flight n=${cfg.rpcConc}`);
      res.rpcConc = await repeat(() => clientCall(client, 'rpc-conc', 'rpc-result', { n: cfg.rpcConc, size: cfg.rpcSize, concurrency: cfg.concurrency }, server, s.dep.brokerPid(server)), 'rps');
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
    res.fanout = await repeat(() => deliveryRun(subs, pub, { topic: EVENT_TOPIC, n: cfg.fanoutEvents, size: 100, mode: 'each', brokerPid: s.dep.brokerPid(subs[0]) }), 'deliveredPerSec');
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
    const run = () => deliveryRun(consumers, pub, { topic: DURABLE_TOPIC, n: cfg.durableEvents, size: 100, mode: 'shared', brokerPid: s.dep.brokerPid(consumers[0]) });
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
      deliveryRun([fast], pub, { topic: EVENT_TOPIC, n, size: 100, mode: 'each', bystanders, slowMs, brokerPid });
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
  const loadStart = os.loadavg();
  takeSnapshot();
  try {
    const rounds = new Map<string, Res[]>(selected.map(n => [n, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      // Rotate the order each round: no transport always goes first (cold machine, other work).
      const order = selected.map((_, i) => selected[(i + round - 1) % selected.length]);
      for (const name of order) {
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
  // Other work on the machine is the main source of noise: keep it beside the figures.
  const loadavg = { start: loadStart.map(x => +x.toFixed(2)), end: os.loadavg().map(x => +x.toFixed(2)) };
  const { text, ratios: rs } = report(results, js, loadavg);
  console.log(text);
  const command = `node .build/bench/peers/run.js ${argv.join(' ')}`.trim();
  const v = versions();
  const summary = { startedAt, command, quick: QUICK, config: cfg, versions: v, loadavg, results, jetstream: js, ratios: rs };
  if (flag('results-md')) writeResultsMd(text, command, v, loadavg);
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
