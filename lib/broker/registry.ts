import * as path from 'node:path';
import type { ResolvedOptions } from '../options.js';
import { Broker } from './broker.js';
import type { BrokerLogger } from './logger.js';

interface Entry {
  opening: Promise<Broker>;
  broker: Broker | undefined;
  refs: number;
}

/**
 * In one process, every server, client and module with the same embedded
 * dataDir shares one broker: the first acquire opens it, the last release
 * closes it. ':memory:' is a dataDir like any other here, so every ':memory:'
 * user in a process shares ONE in-memory broker and sees the others' messages
 * (API.md: same dataDir, same broker); use a real temp dir for isolation.
 */
const brokers = new Map<string, Entry>();
/** Brokers being closed by their last release: a new acquire of the same dataDir waits (else: LOCKED by ourselves). */
const closing = new Map<string, Promise<void>>();

export function brokerKey(dataDir: string): string {
  return dataDir === ':memory:' ? ':memory:' : path.resolve(dataDir);
}

export async function acquireBroker(options: Pick<ResolvedOptions, 'dataDir' | 'fsync' | 'topics' | 'retentionCheckMs' | 'subscriberBufferBytes'>, logger?: BrokerLogger): Promise<Broker> {
  const key = brokerKey(options.dataDir);
  let entry = brokers.get(key);
  if (entry) {
    entry.refs++;
    try {
      const b = await entry.opening;
      b.addTopicConfigs(options.topics ?? {});
      return b;
    } catch (e) {
      entry.refs--;
      throw e;
    }
  }
  const previous = closing.get(key);
  const open = (): Promise<Broker> =>
    Broker.open({
      dataDir: key,
      fsync: options.fsync,
      topics: options.topics,
      retentionCheckMs: options.retentionCheckMs,
      subscriberBufferBytes: options.subscriberBufferBytes,
      logger,
    });
  const opening = previous ? previous.then(open, open) : open();
  entry = { opening, broker: undefined, refs: 1 };
  brokers.set(key, entry);
  try {
    entry.broker = await opening;
    return entry.broker;
  } catch (e) {
    // Nobody holds a broken broker: the next acquire tries again.
    if (brokers.get(key) === entry) brokers.delete(key);
    throw e;
  }
}

/** Drops one reference; the last one closes the broker (and its store). */
export async function releaseBroker(broker: Broker): Promise<void> {
  for (const [key, entry] of brokers) {
    if (entry.broker !== broker) continue;
    if (--entry.refs > 0) return;
    brokers.delete(key);
    const done = broker.close().finally(() => {
      if (closing.get(key) === done) closing.delete(key);
    });
    closing.set(key, done);
    await done;
    return;
  }
  // Not from the registry (or already released): closing is idempotent.
  await broker.close();
}

/** How many brokers are open in this process (tests). */
export function openBrokerCount(): number {
  return brokers.size;
}
