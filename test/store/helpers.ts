import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore, type FileStoreOptions } from '../../lib/store/file-store.js';
import type { StoreLogger, TopicLogConfig } from '../../lib/store/types.js';

export const FIXTURES = join(process.cwd(), '.build/test/store/fixtures');

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'logbus-store-'));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function topicConfig(over: Partial<TopicLogConfig> = {}): TopicLogConfig {
  return {
    segmentBytes: 4096,
    maxMessageBytes: 64 * 1024,
    retention: { maxAgeMs: Number.MAX_SAFE_INTEGER, maxBytes: Number.MAX_SAFE_INTEGER },
    ...over,
  };
}

/** A logger that records what the store reported. */
export function recordingLogger(): StoreLogger & { warnings: string[]; errors: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  return { warnings, errors, warn: m => void warnings.push(m), error: m => void errors.push(m) };
}

export function openFile(dataDir: string, over: Partial<FileStoreOptions> = {}): Promise<FileStore> {
  return FileStore.open({ dataDir, fsync: 'never', logger: recordingLogger(), ...over });
}

/** A compiled child-process fixture; fails clearly when `npx tsc -p tsconfig.json` has not run. */
export function fixture(name: string): string {
  const path = join(FIXTURES, `${name}.js`);
  if (!existsSync(path)) {
    throw new Error(`fixture ${path} is missing: run \`npx tsc -p tsconfig.json\` first (npm test does)`);
  }
  return path;
}

/** Spawns a fixture and collects its stdout lines. */
export function spawnFixture(name: string, args: string[]): { child: ChildProcess; lines: string[]; exited: Promise<void> } {
  const child = spawn(process.execPath, [fixture(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let rest = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    const parts = (rest + d).split('\n');
    rest = parts.pop()!;
    lines.push(...parts);
  });
  let stderr = '';
  child.stderr!.on('data', d => (stderr += d));
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()));
  child.once('exit', code => {
    if (code !== null && code !== 0) lines.push(`exit ${code}: ${stderr}`);
  });
  return { child, lines, exited };
}

export async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 5));
  }
}
