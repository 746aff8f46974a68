import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestMicroservice, ModuleMetadata } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { LogBusError, LogBusServer, type LogBusOptions } from '../../lib/index.js';

/** A Nest microservice on LogBusServer, listening (handlers live) when this resolves. */
export async function startApp(metadata: ModuleMetadata, options: LogBusOptions): Promise<INestMicroservice> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  const app = moduleRef.createNestMicroservice({ strategy: new LogBusServer(options), logger: false });
  try {
    await app.listen();
  } catch (e) {
    await app.close().catch(() => undefined);
    throw e;
  }
  return app;
}

/** listen() must fail: returns the error and closes the app. */
export async function listenError(metadata: ModuleMetadata, options: LogBusOptions): Promise<unknown> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  const app = moduleRef.createNestMicroservice({ strategy: new LogBusServer(options), logger: false });
  try {
    await app.listen();
  } catch (e) {
    await app.close().catch(() => undefined);
    return e;
  }
  await app.close();
  throw new Error('listen() succeeded but was expected to fail');
}

/** Polls until `done()` holds; fails with `what` after the deadline. */
export async function eventually(what: string, done: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (await done()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms));

/** A fresh directory under the OS temp dir; remove() deletes it. */
export async function tempDir(label: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `logbus-e2e-${label}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

let seq = 0;
/** Topic names unique within a test file: every ':memory:' user in a process shares one broker. */
export function uniqueTopic(base: string): string {
  return `${base}-${process.pid}-${++seq}`;
}

/** Resolves when `n` calls have been made; a handler can await `gate.opened` to hold messages in flight. */
export class Gate {
  private release!: () => void;
  readonly opened = new Promise<void>(r => (this.release = r));
  open(): void {
    this.release();
  }
}

/** The LogBusError code a promise rejects with; undefined if it resolves. */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof LogBusError ? e.code : `not a LogBusError: ${String(e)}`;
  }
  return undefined;
}
