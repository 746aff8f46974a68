// Helpers shared by the orchestrator (run.ts) and its child processes.
import { readFileSync } from 'node:fs';

/**
 * Monotonic clock in milliseconds. process.hrtime reads CLOCK_MONOTONIC, which
 * every process on the machine shares, so a timestamp taken in the publisher
 * and one taken in a subscriber process can be subtracted.
 */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface BenchPayload {
  seq: number;
  kind: string;
  pad: string;
}

/** A JSON object whose JSON encoding is about `size` bytes (for seq up to 6 digits). */
export function makePayload(size: number): BenchPayload {
  const probe: BenchPayload = { seq: 100000, kind: 'bench', pad: '' };
  const overhead = JSON.stringify(probe).length;
  return { seq: 0, kind: 'bench', pad: 'x'.repeat(Math.max(0, size - overhead)) };
}

export interface LatencyStats {
  count: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

export function latencyStats(latMs: ArrayLike<number>): LatencyStats {
  const s = Float64Array.from(latMs).sort();
  let sum = 0;
  for (const v of s) sum += v;
  return {
    count: s.length,
    meanMs: sum / (s.length || 1),
    p50Ms: percentile(s, 50),
    p90Ms: percentile(s, 90),
    p99Ms: percentile(s, 99),
    maxMs: s.length ? s[s.length - 1] : NaN,
  };
}

/** Children talk to the orchestrator over the fork() IPC channel only. */
export type IpcMessage = { type: string; tag?: string; [k: string]: unknown };

export function toParent(msg: IpcMessage): void {
  if (process.send) process.send(msg);
}

export function argValue(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  return def;
}

/** Resident set size (current and peak) of a process, from /proc; null where unreadable. */
export function rssOf(pid: number): { rssMB: number; peakMB: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    if (!rss) return null;
    return { rssMB: Number(rss[1]) / 1024, peakMB: hwm ? Number(hwm[1]) / 1024 : NaN };
  } catch {
    return null;
  }
}

/** CPU time (user + system, ms) a process has used so far, from /proc; null when it is gone. */
export function cpuMsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the command name (which may hold spaces): utime is the 12th, stime the 13th
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
const CLOCK_TICKS = 100; // USER_HZ on Linux

/**
 * Sleep the thread without burning CPU and without yielding to the event loop:
 * a "slow subscriber" that blocks like real synchronous work would, so its
 * socket stops being read and backpressure reaches the broker, but it does not
 * steal CPU from the other processes on a 2-core machine.
 */
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
export function blockFor(ms: number): void {
  if (ms > 0) Atomics.wait(sleepCell, 0, 0, ms);
}

export const yieldLoop = (): Promise<void> => new Promise(r => setImmediate(r));
export const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms));

/** `concurrency` workers each awaiting one call at a time: the in-flight shape of JetStream's publish baseline. */
export async function inFlight(n: number, concurrency: number, call: (i: number) => Promise<boolean>) {
  const lat = new Float64Array(n);
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = nowMs();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const s = nowMs();
      try {
        if (!(await call(i))) errors++;
      } catch (err: any) {
        errors++;
        firstError ??= String(err?.message ?? err);
      }
      lat[i] = nowMs() - s;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = nowMs() - t0;
  return { t0, elapsedMs, rps: n / (elapsedMs / 1000), errors, firstError, concurrency, ...latencyStats(lat) };
}
