import { describe, expect, it } from '@jest/globals';
import { createConnection } from '../../lib/connection/factory.js';
import { DeferredConnection } from '../../lib/connection/deferred.js';
import { createEmbeddedConnection, InProcessConnection } from '../../lib/connection/in-process.js';
import { ListeningConnection } from '../../lib/connection/listening.js';
import { LogBusError } from '../../lib/errors.js';
import { resolveOptions } from '../../lib/options.js';

describe('createConnection picks the driver by url', () => {
  it('unset url: the embedded broker in this process', () => {
    expect(createConnection(resolveOptions({ dataDir: ':memory:' }))).toBeInstanceOf(InProcessConnection);
  });

  it('unset url with listen: the embedded broker, also served on the network', () => {
    expect(createConnection(resolveOptions({ dataDir: ':memory:', listen: { port: 0 } }))).toBeInstanceOf(ListeningConnection);
  });

  it.each(['logbus://127.0.0.1:1', 'redis://127.0.0.1:1', 'rediss://127.0.0.1:1'])('%s: a driver loaded on connect()', url => {
    const c = createConnection(resolveOptions({ url }));
    expect(c).toBeInstanceOf(DeferredConnection);
    expect(c.status).toBe('disconnected');
  });
});

describe('DeferredConnection', () => {
  it('turns a driver that cannot be loaded into a clear INVALID_OPTION at connect()', async () => {
    const c = new DeferredConnection('redis', async () => {
      throw new Error("Cannot find package 'ioredis'");
    });
    const e = await c.connect().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(LogBusError);
    expect((e as LogBusError).code).toBe('INVALID_OPTION');
    expect((e as LogBusError).message).toContain('redis driver could not be loaded');
    expect((e as LogBusError).message).toContain('ioredis');
  });

  it('refuses calls before connect() and after close() with CLOSED', async () => {
    const c = new DeferredConnection('test', async () => {
      throw new Error('never loaded');
    });
    expect(() => c.produce('t', [])).toThrow(LogBusError);
    await c.close();
    const e = await c.connect().catch((x: unknown) => x);
    expect((e as LogBusError).code).toBe('CLOSED');
  });

  it('forwards status listeners registered before the driver loaded', async () => {
    const c = new DeferredConnection('test', async () => createEmbeddedConnection(resolveOptions({ dataDir: ':memory:' })));
    const seen: string[] = [];
    c.onStatus(s => seen.push(s));
    await c.connect();
    expect(c.status).toBe('connected');
    expect((await c.produce('deferred.t', [{ value: Buffer.from('1') }]))[0].offset).toBe(0);
    await c.close();
    expect(seen).toEqual(['connected', 'disconnected']);
  });
});
