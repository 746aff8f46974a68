/** Helpers the standalone bench scripts share. */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BusConnection, OutgoingMessage } from '../lib/connection/types.js';
import { WireConnection, type WireClientTuning } from '../lib/wire/client.js';

/** `--name value` from the command line, or the default (also when `--name` is the last argument, with no value). */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

/**
 * Produces n copies of `msgs`' messages to topic in batches of msgs.length,
 * `inFlight` produces outstanding; onSent sees the running count.
 */
export async function produceAll(
  c: Pick<BusConnection, 'produce'>,
  topic: string,
  msgs: OutgoingMessage[],
  n: number,
  inFlight: number,
  onSent?: (sent: number) => void,
): Promise<void> {
  const batch = msgs.length;
  let sent = 0;
  const lane = async (): Promise<void> => {
    while (sent < n) {
      const k = Math.min(batch, n - sent);
      sent += k;
      onSent?.(sent);
      await c.produce(topic, k === batch ? msgs : msgs.slice(0, k));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

/**
 * n single-message produce() calls (as emit() does) of `value`, `window` in
 * flight, over `topics` round robin (message i goes to topics[i % length]).
 */
export function publishSingles(c: Pick<BusConnection, 'produce'>, topics: string[], n: number, window: number, value: Buffer): Promise<void> {
  let sent = 0;
  let inFlight = 0;
  return new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (inFlight < window && sent < n) {
        const t = topics[sent % topics.length];
        sent++;
        inFlight++;
        c.produce(t, [{ value }]).then(() => {
          inFlight--;
          if (sent === n && inFlight === 0) resolve();
          else pump();
        }, reject);
      }
    };
    pump();
  });
}

/** A process's resident set (VmRSS of /proc/<pid>/status) in MiB, NaN if absent. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Counts another process's open fds (/proc/<pid>/fd; works even when that process has none left). */
export const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** A connected WireConnection (no token); the rest of opts is the client tuning (logger, clientName …). */
export async function wireConn(url: string, opts: { rpcTimeoutMs: number } & WireClientTuning): Promise<WireConnection> {
  const { rpcTimeoutMs, ...tuning } = opts;
  const c = new WireConnection({ url, token: undefined, rpcTimeoutMs }, tuning);
  await c.connect();
  return c;
}

export interface SoakBroker {
  port: number;
  /** The broker's pid, as it reports it. */
  pid: number;
  /** SIGTERM, resolved when the process has exited. */
  stop(): Promise<void>;
}

/**
 * Starts bench/soak-broker.js in a child process with `options` (LogBrokerOptions
 * as JSON) and waits for its `{"listening": port, "pid": pid}` line on stdout.
 */
export async function startSoakBroker(options: object): Promise<SoakBroker> {
  const script = fileURLToPath(new URL('./soak-broker.js', import.meta.url));
  const proc = spawn(process.execPath, [script, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>(r => proc.once('exit', () => r()));
  const { listening, pid } = await new Promise<{ listening: number; pid: number }>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    const onLine = (line: string): void => {
      if (!line.includes('listening')) return;
      lines.off('line', onLine);
      resolve(JSON.parse(line) as { listening: number; pid: number });
    };
    lines.on('line', onLine);
    proc.once('exit', code => reject(new Error(`broker exited with ${code}`)));
  });
  return { port: listening, pid, stop: () => (proc.kill('SIGTERM'), exited) };
}
