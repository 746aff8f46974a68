import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConsumeSpec } from '../../lib/connection/types.js';
import { WireConnection, type WireClientTuning } from '../../lib/wire/client.js';
import type { WireLogger } from '../../lib/wire/server.js';

export function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'logbus-wire-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const quietBrokerLogger = { log: () => {}, warn: () => {}, error: () => {} };

/** Collects warnings so tests can assert the logged reason. */
export function collectingLogger(): WireLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, log: () => {}, warn: m => lines.push(m) };
}

export function client(port: number, opts: { token?: string; rpcTimeoutMs?: number } = {}, tuning: WireClientTuning = {}): WireConnection {
  return new WireConnection(
    { url: `logbus://127.0.0.1:${port}`, token: opts.token, rpcTimeoutMs: opts.rpcTimeoutMs ?? 30_000 },
    { logger: collectingLogger(), reconnectBaseMs: 20, reconnectMaxMs: 200, ...tuning },
  );
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 10));
  }
}

export function consumeSpec(topic: string, group: string, over: Partial<ConsumeSpec> = {}): ConsumeSpec {
  return { topic, group, from: 'earliest', concurrency: 16, ackWaitMs: 30_000, maxDeliver: 5, backoffMs: [10], deadLetter: false, ...over };
}

export const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
