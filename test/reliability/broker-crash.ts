/**
 * kill -9 of a broker process under load, round after round
 * (bench/reliability-broker-crash.ts, broker-crash.test.ts).
 *
 * A broker process (the CLI, fsync 'always') on a temp dataDir and a fixed
 * port; producer processes publishing keyed, self-checking messages
 * (crash-payload.ts) and recording every acknowledged publish; two consumer
 * groups of two member processes each, recording every delivery and acking it
 * (fixtures/crash-client.ts). Each round: wait until every client is
 * connected, let the load run a random time, kill -9 the broker, start it
 * again on the same dataDir and port; the clients reconnect by themselves.
 * At the end: stop the producers, let both groups drain, read the whole log
 * back and check:
 *   - every acknowledged publish is in the log exactly once, at the offset it
 *     was acknowledged with, with its exact bytes, key and headers; every
 *     record is one a producer sent (a failed publish may be there, once);
 *     each producer's records are in the order it sent them;
 *   - each group got every record at least once and no handler ever got a
 *     record that is not whole (the consumers check JSON and a checksum);
 *   - an acked message is delivered again only after a crash (never twice
 *     within one broker lifetime), i.e. only when its ack may not have been
 *     committed yet, and then with deliveryCount >= 2; the window is measured: how long before the kill the
 *     latest redelivered ack was made (group positions are committed in
 *     batches every 100 ms, fsynced).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { WireConnection } from '../../lib/wire/client.js';
import { built, freePort, killProcess, onStdoutLines } from '../wire/children.js';
import { CRASH_TOPIC, crashMessage, parseCrashMessage } from './crash-payload.js';
import { prng } from './sim-disk.js';

export interface BrokerCrashOptions {
  dataDir: string;
  rounds: number;
  producers?: number;
  /** produce calls in flight per producer */
  producerInFlight?: number;
  groups?: number;
  membersPerGroup?: number;
  /** load time before each kill, ms (random in this range) */
  minRunMs?: number;
  maxRunMs?: number;
  seed?: number;
  onRound?: (round: number, r: RoundFigures) => void;
}

export interface RoundFigures {
  round: number;
  ranMs: number;
  /** publishes acknowledged so far */
  acked: number;
}

export interface BrokerCrashResult {
  rounds: number;
  publishesAcked: number;
  publishesFailed: number;
  /** failed publishes that made it into the log anyway (taken, answer lost in the crash) */
  failedButStored: number;
  logRecords: number;
  deliveries: number;
  /** acked messages delivered again after a crash, per group, summed */
  redeliveries: number;
  /** of those, delivered with deliveryCount 1 (each one is also a violation: counts survive a kill, RELIABILITY.md §4) */
  redeliveriesCountedOnce: number;
  redeliveriesPerRound: number[];
  /** the oldest ack (ms before the kill) among messages redelivered after a crash */
  maxRedeliveredAckAgeMs: number;
  violations: string[];
  notes: string[];
}

interface ClientProc {
  name: string;
  proc: ChildProcess;
  exited: Promise<void>;
  stderr: string;
  ready: boolean;
  /** 'reconnecting' seen so far: which broker lifetime the next line belongs to */
  epoch: number;
  connectedCount: number;
  done: boolean;
}

/** Lines of a child's stdout, handled as they come (nothing kept but what the checker needs). */
function spawnClient(name: string, args: string[], onLine: (c: ClientProc, line: any) => void): ClientProc {
  const proc = spawn(process.execPath, [built('test/reliability/fixtures/crash-client.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const c: ClientProc = { name, proc, exited: new Promise(r => proc.once('exit', () => r())), stderr: '', ready: false, epoch: 0, connectedCount: 0, done: false };
  onStdoutLines(proc, p => {
    if (!p) return;
    const line = JSON.parse(p);
    if (line.s === 'reconnecting') c.epoch++;
    else if (line.s === 'connected') c.connectedCount++;
    else if (line.ready) c.ready = true;
    else if (line.done) c.done = true;
    onLine(c, line);
  });
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (c.stderr = (c.stderr + s).slice(-2000)));
  return c;
}

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, detail: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} ${detail()}`);
    await new Promise(r => setTimeout(r, 10));
  }
}


interface DeliveryRec {
  epoch: number;
  count: number;
  at: number;
}

export async function runBrokerCrash(o: BrokerCrashOptions): Promise<BrokerCrashResult> {
  const producers = o.producers ?? 3;
  const groups = o.groups ?? 2;
  const members = o.membersPerGroup ?? 2;
  const minRun = o.minRunMs ?? 300;
  const maxRun = o.maxRunMs ?? 1200;
  // the kill times are reproducible from the seed (the interleavings are not)
  const random = prng(o.seed ?? 1);
  const port = await freePort();
  const url = `logbus://127.0.0.1:${port}`;
  const violations: string[] = [];
  const notes: string[] = [];
  const violate = (v: string) => {
    if (violations.length < 50) violations.push(v);
  };

  // What the producers were told: producer → seq → offset; and what failed.
  const acked = new Map<number, Map<number, number>>();
  const failed = new Map<number, Set<number>>();
  let ackedCount = 0;
  let failedCount = 0;
  // What each group's handlers got: group → offset → deliveries.
  const delivered = new Map<string, Map<number, DeliveryRec[]>>();
  let deliveries = 0;
  const killTimes: number[] = [];

  let broker: ChildProcess | undefined;
  let brokerStderr = '';
  const startBroker = async (): Promise<void> => {
    const b = spawn(process.execPath, [built('lib/cli/main.js'), 'broker', '--data', o.dataDir, '--port', String(port), '--fsync', 'always'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    broker = b;
    let out = '';
    b.stderr!.setEncoding('utf8').on('data', (s: string) => (brokerStderr = (brokerStderr + s).slice(-4000)));
    await new Promise<void>((resolve, reject) => {
      b.once('exit', code => reject(new Error(`broker exited with ${code} before listening: ${brokerStderr}`)));
      b.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.includes('listening')) resolve();
      });
    });
  };

  const onLine = (c: ClientProc, line: any): void => {
    if (line.a) {
      const p = Number(c.name.slice(1));
      const m = acked.get(p)!;
      for (const [seq, offset] of line.a as [number, number][]) {
        m.set(seq, offset);
        ackedCount++;
      }
    } else if (line.f) {
      const p = Number(c.name.slice(1));
      for (const seq of line.f as number[]) failed.get(p)!.add(seq);
      failedCount += line.f.length;
    } else if (line.d) {
      const [offset, , , count] = line.d as number[];
      const group = c.name.split('/')[0];
      const g = delivered.get(group)!;
      let list = g.get(offset);
      if (!list) g.set(offset, (list = []));
      list.push({ epoch: c.epoch, count, at: Date.now() });
      deliveries++;
    } else if (line.bad !== undefined) {
      violate(`${c.name} got a record that is not whole at offset ${line.o}: ${line.bad}`);
    }
  };

  const clients: ClientProc[] = [];
  let admin: WireConnection | undefined;
  try {
    await startBroker();
    for (let p = 0; p < producers; p++) {
      acked.set(p, new Map());
      failed.set(p, new Set());
      clients.push(spawnClient(`p${p}`, [url, 'producer', String(p), String(o.producerInFlight ?? 2)], onLine));
    }
    for (let g = 0; g < groups; g++) {
      delivered.set(`g${g}`, new Map());
      for (let m = 0; m < members; m++) clients.push(spawnClient(`g${g}/${m}`, [url, 'consumer', `g${g}`], onLine));
    }
    const clientDetail = () => clients.map(c => `${c.name}: epoch ${c.epoch} connected ${c.connectedCount} ${c.stderr.slice(-300)}`).join('; ');
    await waitUntil('clients ready', () => clients.every(c => c.ready), 30_000, clientDetail);

    const redeliveriesPerRound: number[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      // every client is on the current broker (so every kill hits all of them, and their epochs count kills)
      await waitUntil(`round ${round}: all clients reconnected`, () => clients.every(c => c.epoch === round - 1 && c.connectedCount >= round), 30_000, clientDetail);
      const ranMs = Math.round(minRun + random() * (maxRun - minRun));
      await new Promise(r => setTimeout(r, ranMs));
      killTimes.push(Date.now());
      await killProcess(broker!, 'SIGKILL');
      await startBroker();
      o.onRound?.(round, { round, ranMs, acked: ackedCount });
    }
    await waitUntil('all clients reconnected after the last restart', () => clients.every(c => c.epoch === o.rounds && c.connectedCount > o.rounds), 30_000, clientDetail);

    // Stop producing; let both groups drain.
    const prods = clients.filter(c => c.name.startsWith('p'));
    for (const c of prods) c.proc.kill('SIGTERM');
    await waitUntil('producers done', () => prods.every(c => c.done), 60_000, clientDetail);
    admin = new WireConnection({ url, token: undefined, rpcTimeoutMs: 30_000 }, { logger: { log: () => {}, warn: () => {} } });
    await admin.connect();
    const end = (await admin.topics()).find(t => t.name === CRASH_TOPIC)?.nextOffset ?? 0;
    await waitUntil(
      'groups drained',
      async () => {
        const gs = await admin!.groups(CRASH_TOPIC);
        return gs.length === groups && gs.every(g => g.committedOffset === end && g.inFlight === 0);
      },
      60_000,
    );

    // Read the log back, whole.
    const owner = new Map<string, number>(); // "p:seq" → offset found at
    const lastSeqOf = new Map<number, number>();
    let next = 0;
    while (next < end) {
      const batch = await admin.read(CRASH_TOPIC, next, 1000);
      if (batch.length === 0) {
        violate(`read returned nothing at ${next} before the end ${end}`);
        break;
      }
      for (const r of batch) {
        if (r.offset !== next) violate(`offset ${next} expected, read gave ${r.offset}`);
        next = r.offset + 1;
        const m = parseCrashMessage(r.value, r.key, r.headers);
        if (typeof m === 'string') {
          violate(`record at ${r.offset} is not one a producer sent whole: ${m}`);
          continue;
        }
        const id = `${m.p}:${m.seq}`;
        if (owner.has(id)) violate(`${id} is in the log twice: at ${owner.get(id)} and ${r.offset}`);
        owner.set(id, r.offset);
        const ackOffset = acked.get(m.p)?.get(m.seq);
        if (ackOffset === undefined && !failed.get(m.p)?.has(m.seq)) violate(`${id} at ${r.offset} was never published`);
        if (ackOffset !== undefined && ackOffset !== r.offset) violate(`${id} acknowledged at ${ackOffset} but found at ${r.offset}`);
        const last = lastSeqOf.get(m.p) ?? -1;
        if (m.seq <= last) violate(`producer ${m.p} out of order: seq ${m.seq} at ${r.offset} after seq ${last}`);
        lastSeqOf.set(m.p, m.seq);
      }
    }
    let failedButStored = 0;
    for (const [p, m] of acked) for (const [seq, offset] of m) if (!owner.has(`${p}:${seq}`)) violate(`acknowledged ${p}:${seq} (offset ${offset}) is missing`);
    for (const [p, s] of failed) for (const seq of s) if (owner.has(`${p}:${seq}`)) failedButStored++;

    // Let stray deliveries land, then stop the consumers.
    await new Promise(r => setTimeout(r, 300));
    const cons = clients.filter(c => !c.name.startsWith('p'));
    await Promise.all(cons.map(c => killProcess(c.proc, 'SIGTERM')));

    // Deliveries.
    let redeliveries = 0;
    let redeliveriesCountedOnce = 0;
    let maxAge = 0;
    for (let i = 0; i < o.rounds; i++) redeliveriesPerRound.push(0);
    for (const [group, g] of delivered) {
      for (let offset = 0; offset < end; offset++) if (!g.has(offset)) violate(`${group} never got offset ${offset}`);
      for (const [offset, list] of g) {
        if (offset >= end) violate(`${group} got offset ${offset} past the end ${end}`);
        // every delivery line is an ack (the handler acks right after recording)
        for (let i = 1; i < list.length; i++) {
          const prev = list[i - 1];
          const cur = list[i];
          if (cur.epoch === prev.epoch) {
            violate(`${group} offset ${offset}: acked in broker lifetime ${prev.epoch} and delivered again in the same lifetime`);
            continue;
          }
          if (cur.epoch < prev.epoch) {
            notes.push(`${group} offset ${offset}: delivered in lifetime ${cur.epoch} after ${prev.epoch} (a member's lines are in order, two members' are not)`);
            continue;
          }
          redeliveries++;
          redeliveriesPerRound[prev.epoch] = (redeliveriesPerRound[prev.epoch] ?? 0) + 1;
          // It was delivered before the kill, so the persisted counts make this at least its second delivery.
          if (cur.count < 2) {
            redeliveriesCountedOnce++;
            violate(`${group} offset ${offset}: delivered in lifetime ${prev.epoch} (count ${prev.count}), again in lifetime ${cur.epoch} with deliveryCount ${cur.count}`);
          }
          const age = killTimes[prev.epoch] - prev.at;
          if (age > maxAge) maxAge = age;
        }
      }
    }
    return {
      rounds: o.rounds,
      publishesAcked: ackedCount,
      publishesFailed: failedCount,
      failedButStored,
      logRecords: end,
      deliveries,
      redeliveries,
      redeliveriesCountedOnce,
      redeliveriesPerRound,
      maxRedeliveredAckAgeMs: maxAge,
      violations,
      notes: notes.slice(0, 20),
    };
  } finally {
    await admin?.close().catch(() => undefined);
    await Promise.all(clients.map(c => killProcess(c.proc, 'SIGKILL')));
    if (broker) await killProcess(broker, 'SIGTERM');
  }
}
