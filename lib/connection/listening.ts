import type { Broker } from '../broker/broker.js';
import type { BrokerLogger } from '../broker/logger.js';
import { acquireBroker, releaseBroker } from '../broker/registry.js';
import { LogBusError } from '../errors.js';
import type { ResolvedOptions } from '../options.js';
import { InProcessConnection } from './in-process.js';

interface Listener {
  broker: Broker;
  refs: number;
  server: Promise<{ close(): Promise<void> }>;
}

/** One network listener per address in this process, shared by every embedded user that asks for it. */
const listeners = new Map<string, Listener>();

async function acquireListener(broker: Broker, options: ResolvedOptions): Promise<string> {
  const { host, port } = options.listen!;
  const key = `${host}:${port}`;
  const found = port === 0 ? undefined : listeners.get(key);
  if (found) {
    if (found.broker !== broker) {
      throw new LogBusError('INVALID_OPTION', `option 'listen' ${key} already serves another dataDir in this process`);
    }
    found.refs++;
    await found.server;
    return key;
  }
  // the wire server is loaded only by those who listen
  const server = import('../wire/log-broker.js').then(m => m.startListener(broker, options));
  const id = port === 0 ? `${key}#${Math.random()}` : key;
  listeners.set(id, { broker, refs: 1, server });
  try {
    await server;
  } catch (e) {
    listeners.delete(id);
    throw e;
  }
  return id;
}

async function releaseListener(id: string): Promise<void> {
  const l = listeners.get(id);
  if (!l || --l.refs > 0) return;
  listeners.delete(id);
  await (await l.server).close();
}

/**
 * The embedded broker of `dataDir`, also served to remote clients
 * (`logbus://`) on options.listen while this connection is open.
 */
export class ListeningConnection extends InProcessConnection {
  private listenerId: string | undefined;

  constructor(
    private readonly options: ResolvedOptions,
    logger?: BrokerLogger,
  ) {
    super(async () => ({ broker: await acquireBroker(options, logger), release: releaseBroker }));
  }

  override async connect(): Promise<void> {
    await super.connect();
    if (this.listenerId !== undefined) return;
    try {
      this.listenerId = await acquireListener(this.brokerInstance!, this.options);
    } catch (e) {
      await super.close().catch(() => undefined);
      throw e;
    }
  }

  override async close(): Promise<void> {
    const id = this.listenerId;
    this.listenerId = undefined;
    if (id !== undefined) await releaseListener(id);
    await super.close();
  }
}
