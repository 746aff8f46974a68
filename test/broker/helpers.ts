import { Broker } from '../../lib/broker/broker.js';
import type { BrokerLogger } from '../../lib/broker/logger.js';
import type { BusConnection, ConsumeSpec, Delivery } from '../../lib/connection/types.js';
import type { TopicConfig } from '../../lib/options.js';

export const buf = (s: string): Buffer => Buffer.from(s);
export const text = (d: { value: Buffer }): string => d.value.toString();

/** Collects what the broker logs, so tests can assert on warnings and stay quiet. */
export class MemoryLogger implements BrokerLogger {
  readonly warnings: string[] = [];
  readonly errors: string[] = [];
  log(): void {}
  warn(m: string): void {
    this.warnings.push(m);
  }
  error(m: string): void {
    this.errors.push(m);
  }
}

export async function openBroker(
  opts: { topics?: Record<string, TopicConfig>; subscriberBufferBytes?: number; dataDir?: string; fsync?: 'always' | 'interval' | 'never' } = {},
): Promise<{ broker: Broker; logger: MemoryLogger }> {
  const logger = new MemoryLogger();
  const broker = await Broker.open({
    dataDir: opts.dataDir ?? ':memory:',
    fsync: opts.fsync ?? 'never',
    topics: opts.topics ?? {},
    retentionCheckMs: 0,
    subscriberBufferBytes: opts.subscriberBufferBytes,
    logger,
  });
  return { broker, logger };
}

/** Polls until cond() holds; fails with `what` after timeoutMs. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 2));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms));

export function spec(topic: string, group: string, over: Partial<ConsumeSpec> = {}): ConsumeSpec {
  return {
    topic,
    group,
    from: 'earliest',
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 5,
    backoffMs: [20, 40],
    deadLetter: `${topic}.dlq`,
    ...over,
  };
}

export async function produceMany(c: BusConnection, topic: string, n: number, key?: (i: number) => string | undefined): Promise<void> {
  const msgs = Array.from({ length: n }, (_, i) => ({ value: buf(String(i)), key: key?.(i) }));
  await c.produce(topic, msgs);
}

export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return (e as { code?: string }).code ?? 'no code';
  }
  return undefined;
}

export type Received = { d: Delivery; text: string };
