/**
 * Shared by the Redis driver tests: they run against the real Redis at
 * 127.0.0.1:6379 (REDIS_URL to override) and FAIL, never skip, when it is not there.
 * Every suite uses its own prefix and deletes its keys at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisConnection } from '../../lib/connection/redis/index.js';
import type { ConsumeSpec, Delivery } from '../../lib/connection/types.js';
import { resolveOptions, type LogBusOptions } from '../../lib/options.js';

/** freePort: a TCP port free on 127.0.0.1 (for a redis-server a test starts); killProcess: SIGKILL by default, resolved once exited. */
export { freePort, killProcess } from '../wire/children.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export async function requireRedis(url = REDIS_URL): Promise<Redis> {
  const admin = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 1, disconnectTimeout: 100 });
  admin.on('error', () => undefined);
  try {
    await admin.connect();
    await admin.ping();
  } catch (e) {
    admin.disconnect();
    throw new Error(`the Redis driver tests need a Redis at ${url} (start redis-server, or set REDIS_URL): ${(e as Error).message}`);
  }
  return admin;
}

export function uniquePrefix(): string {
  return `logbus-test-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export async function deleteKeys(admin: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await admin.del(...keys);
  } while (cursor !== '0');
}

/** Opens connections on one prefix and closes them all at the end. */
export class Bus {
  private readonly open: RedisConnection[] = [];
  /** What the driver logged, instead of the console. */
  readonly warnings: string[] = [];
  readonly errors: string[] = [];
  private readonly logger = { warn: (m: string) => this.warnings.push(m), error: (m: string) => this.errors.push(m) };
  constructor(
    readonly prefix: string,
    readonly url = REDIS_URL,
  ) {}

  async connection(extra: LogBusOptions = {}): Promise<RedisConnection> {
    const c = new RedisConnection(resolveOptions({ url: this.url, prefix: this.prefix, ...extra }), this.logger);
    await c.connect();
    this.open.push(c);
    return c;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.open.splice(0).map(c => c.close()));
  }
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms));

export const buf = (s: string) => Buffer.from(s);

export function spec(topic: string, group: string, over: Partial<ConsumeSpec> = {}): ConsumeSpec {
  return {
    topic,
    group,
    from: 'earliest',
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 5,
    backoffMs: [20],
    deadLetter: `${topic}.dlq`,
    ...over,
  };
}

export const text = (d: { value: Buffer }) => d.value.toString();
export type { Delivery };

/** Starts `redis-server <args>` listening on `port`; resolves once it answers PING. */
export async function spawnRedis(port: number, args: string[]): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  const failed = new Promise<never>((_, reject) =>
    child.once('error', e => reject(new Error(`cannot start redis-server (needed by this test): ${e.message}`))),
  );
  const up = (async () => {
    for (let i = 0; i < 200; i++) {
      try {
        const probe = await requireRedis(`redis://127.0.0.1:${port}`);
        probe.disconnect();
        return child;
      } catch {
        await sleep(25);
      }
    }
    throw new Error(`redis-server on port ${port} did not come up`);
  })();
  return Promise.race([up, failed]);
}
