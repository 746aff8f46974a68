// Where the bus lives for one scenario, and probes of the machine's brokers.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sleep } from './common.js';
import { Child } from './child.js';
import { BUILD, CPU_PROF, DATA_ROOT, PROF_DIR, flag, log } from './config.js';
import { NATS_URL, REDIS_HOST, REDIS_PORT, TCP_PORT } from './transports.js';
import type { Placement, TransportDef } from './transports.js';

/**
 * Where the bus lives for one scenario of one transport. Nest peers: nothing
 * to start (external broker or none). logbus: a fresh data dir and port per
 * scenario, so scenarios cannot leak state (or a wedged broker) into each
 * other; the broker runs in the first server process (embedded) or in a
 * process of its own (standalone).
 */
export interface Deployment {
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

/** A port nobody listens on right now (the OS picks it), so that other work on the machine cannot collide with ours. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

let portSeq = 0;
export async function deploy(name: string, def: TransportDef, scenario: string): Promise<Deployment> {
  if (!def.logbus) {
    const pid = def.broker === 'redis' ? redisPid() : def.broker === 'nats' ? pidByComm('nats-server') : undefined;
    // Nest TCP has no broker: the server listens on a fresh port (BENCH_TCP_PORT pins it).
    const port = def.broker === null ? (TCP_PORT ?? (await freePort())) : undefined;
    return { host: { port }, peer: { port }, brokerPid: () => pid, close: async () => undefined };
  }
  const port = process.env.BENCH_LOGBUS_PORT ? Number(process.env.BENCH_LOGBUS_PORT) + portSeq++ : await freePort();
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
export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
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

export const natsHostPort = (() => {
  const u = new URL(NATS_URL);
  return { host: u.hostname, port: Number(u.port || 4222) };
})();

export async function brokerReachable(kind: 'redis' | 'nats' | null): Promise<string | null> {
  if (kind === 'redis') return (await canConnect(REDIS_HOST, REDIS_PORT)) ? null : `redis not reachable at ${REDIS_HOST}:${REDIS_PORT}`;
  if (kind === 'nats') return (await canConnect(natsHostPort.host, natsHostPort.port)) ? null : `nats not reachable at ${NATS_URL}`;
  return null;
}
