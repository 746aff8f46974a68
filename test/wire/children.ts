import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { waitFor } from './helpers.js';

/** Fixtures and the CLI run compiled: `npx tsc -p tsconfig.json` emits them to .build/. */
export function built(path: string): string {
  const file = resolve(process.cwd(), '.build', path);
  if (!existsSync(file)) throw new Error(`${file} is missing: run 'npx tsc -p tsconfig.json' first`);
  return file;
}

export interface Child {
  proc: ChildProcess;
  /** stdout, one parsed JSON line each (non-JSON lines as strings) */
  lines: unknown[];
  stderr: string[];
  exited: Promise<number | null>;
  waitLine(what: string, pred: (line: any) => boolean, timeoutMs?: number): Promise<any>;
}

const running = new Set<ChildProcess>();

/** Calls onLine with each complete line the child writes to stdout, as it comes. */
export function onStdoutLines(proc: ChildProcess, onLine: (line: string) => void): void {
  let partial = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) onLine(p);
  });
}

export function spawnNode(script: string, args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  running.add(proc);
  const lines: unknown[] = [];
  const stderr: string[] = [];
  onStdoutLines(proc, p => {
    try {
      lines.push(JSON.parse(p));
    } catch {
      lines.push(p);
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const exited = new Promise<number | null>(r =>
    proc.on('exit', code => {
      running.delete(proc);
      r(code);
    }),
  );
  return {
    proc,
    lines,
    stderr,
    exited,
    async waitLine(what, pred, timeoutMs = 20_000) {
      await waitFor(`${what} (stderr: ${stderr.join('').slice(-500)})`, () => lines.some(pred), timeoutMs);
      return lines.find(pred);
    },
  };
}

export function spawnMember(url: string, role: string, ...args: string[]): Child {
  return spawnNode(built('test/wire/fixtures/member.js'), [url, role, ...args]);
}

/** Sends `signal` to proc and resolves once it has exited (at once if it already has). */
export function killProcess(proc: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  return new Promise(resolve => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill(signal);
  });
}

/** Kills whatever a test left running (afterEach). */
export async function killAll(): Promise<void> {
  await Promise.all([...running].map(p => killProcess(p)));
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolvePort(typeof a === 'object' && a ? a.port : 0));
    });
  });
}
