import { afterEach, describe, expect, it } from '@jest/globals';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openBrokerCount } from '../../lib/broker/registry.js';
import { createEmbeddedConnection } from '../../lib/connection/in-process.js';
import type { BusConnection, Delivery } from '../../lib/connection/types.js';
import { resolveOptions } from '../../lib/options.js';
import { buf, codeOf, text } from './helpers.js';

const open: BusConnection[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map(c => c.close()));
});

function embedded(dataDir: string, extra: Parameters<typeof resolveOptions>[0] = {}): BusConnection {
  const c = createEmbeddedConnection(resolveOptions({ dataDir, ...extra }), { warn: () => undefined, error: () => undefined });
  open.push(c);
  return c;
}

describe('embedded connections share one broker per dataDir', () => {
  it("two clients on ':memory:' see each other's messages; the last close releases the broker", async () => {
    const before = openBrokerCount();
    const server = embedded(':memory:');
    const client = embedded(':memory:');
    expect(server.status).toBe('disconnected');
    await Promise.all([server.connect(), client.connect()]);
    expect(server.status).toBe('connected');
    expect(openBrokerCount()).toBe(before + 1);
    const got: Delivery[] = [];
    await server.subscribe({ pattern: 'shared' }, d => got.push(d));
    await client.produce('shared', [{ value: buf('hi') }]);
    expect(got.map(text)).toEqual(['hi']);
    const statuses: string[] = [];
    server.onStatus(s => statuses.push(s));
    await server.close();
    expect(statuses).toEqual(['disconnected']);
    expect(openBrokerCount()).toBe(before + 1); // client still holds it
    await client.close();
    expect(openBrokerCount()).toBe(before);
  });

  it('every call on a closed connection fails with CLOSED; connect() is idempotent', async () => {
    const c = embedded(':memory:');
    expect(await codeOf(c.produce('t', [{ value: buf('x') }]))).toBe('CLOSED'); // not connected yet
    await c.connect();
    await c.connect();
    await c.close();
    await c.close();
    for (const p of [
      () => c.produce('t', [{ value: buf('x') }]),
      () => c.subscribe({ pattern: 't' }, () => undefined),
      () => c.serveRpc('x', () => undefined),
      () => c.read('t', 'earliest', 1),
      () => c.topics(),
      () => c.groups('t'),
      () => c.stats(),
      () => c.createTopic('t', {}),
      () => c.resetGroup('t', 'g', 'earliest'),
      () => c.connect(),
    ]) {
      expect(await codeOf(p())).toBe('CLOSED');
    }
  });

  it('paths are normalized: ./x and x name the same broker', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logbus-reg-'));
    const before = openBrokerCount();
    try {
      const rel = path.relative(process.cwd(), dir);
      const a = embedded(dir, { fsync: 'never' });
      const b = embedded(`./${rel}/`, { fsync: 'never' });
      await Promise.all([a.connect(), b.connect()]);
      expect(openBrokerCount()).toBe(before + 1);
      const got: string[] = [];
      await a.subscribe({ pattern: 'p' }, d => got.push(text(d)));
      await b.produce('p', [{ value: buf('same broker') }]);
      expect(got).toEqual(['same broker']);
    } finally {
      await Promise.all(open.splice(0).map(c => c.close()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a dataDir closed by its last user can be opened again at once, with its data', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logbus-reg-'));
    try {
      const first = embedded(dir, { fsync: 'never' });
      await first.connect();
      await first.produce('t', [{ value: buf('kept') }]);
      const closing = first.close();
      const second = embedded(dir, { fsync: 'never' });
      await second.connect(); // waits for the close instead of failing with LOCKED
      await closing;
      expect((await second.read('t', 'earliest', 10)).map(text)).toEqual(['kept']);
    } finally {
      await Promise.all(open.splice(0).map(c => c.close()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a connection whose broker closes', () => {
  it('reports disconnected and fails every call with CLOSED', async () => {
    const { openBroker } = await import('./helpers.js');
    const { broker } = await openBroker();
    const c = broker.connect();
    expect(c.status).toBe('connected');
    const seen: string[] = [];
    c.onStatus(s => seen.push(s));
    await broker.close();
    expect(c.status).toBe('disconnected');
    expect(seen).toEqual(['disconnected']);
    expect(await codeOf(c.produce('t', [{ value: buf('x') }]))).toBe('CLOSED');
    expect(await codeOf(c.topics())).toBe('CLOSED');
    await c.close();
  });
});

describe('a dataDir held elsewhere', () => {
  it('connect() fails with LOCKED, and a later connect succeeds once it is free', async () => {
    const { openBroker } = await import('./helpers.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logbus-reg-'));
    const before = openBrokerCount();
    try {
      const { broker: holder } = await openBroker({ dataDir: dir }); // outside the registry
      const c = embedded(dir, { fsync: 'never' });
      expect(await codeOf(c.connect())).toBe('LOCKED');
      expect(openBrokerCount()).toBe(before); // the failed open left nothing behind
      await holder.close();
      const d = embedded(dir, { fsync: 'never' });
      await d.connect();
      expect(d.status).toBe('connected');
    } finally {
      await Promise.all(open.splice(0).map(c => c.close()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
