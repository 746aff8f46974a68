/**
 * A broker on the network: the embedded broker of a dataDir (shared through
 * the registry with any embedded server/client of this process) plus a
 * WireServer giving each remote connection its own broker session.
 */
import type { Broker } from '../broker/broker.js';
import type { BrokerLogger } from '../broker/logger.js';
import { acquireBroker, releaseBroker } from '../broker/registry.js';
import { LogBusError } from '../errors.js';
import { DEFAULTS, type FsyncMode, type LogBusOptions, resolveOptions, type ResolvedOptions, type TopicConfig } from '../options.js';
import { WireServer, type WireServerOptions, type WireTlsOptions } from './server.js';

export interface LogBrokerOptions {
  /** Default './.logbus'; ':memory:' keeps everything in memory. */
  dataDir?: string;
  /** Default 7420; 0 picks a free port (see address()). */
  port?: number;
  /** Default '127.0.0.1'. */
  host?: string;
  token?: string;
  fsync?: FsyncMode;
  topics?: Record<string, TopicConfig>;
  retentionCheckMs?: LogBusOptions['retentionCheckMs'];
  subscriberBufferBytes?: number;
  tls?: WireTlsOptions;
  /** Protocol limits and heartbeats (see WireServerOptions). */
  wire?: Omit<WireServerOptions, 'host' | 'port' | 'token' | 'tls'>;
  logger?: BrokerLogger;
}

/**
 * Serves `broker` to remote clients on resolved.listen (LogBusServer and
 * LogBusClient call this for an embedded broker with `listen`). The caller
 * closes the returned server before releasing the broker.
 */
export async function startListener(
  broker: Broker,
  options: Pick<ResolvedOptions, 'listen' | 'token'>,
  extra: Omit<WireServerOptions, 'host' | 'port' | 'token'> = {},
): Promise<WireServer> {
  if (!options.listen) throw new LogBusError('INVALID_OPTION', "startListener needs the 'listen' option ({ host?, port })");
  const server = new WireServer(() => broker.connect(), { ...extra, host: options.listen.host, port: options.listen.port, token: options.token });
  await server.listen();
  return server;
}

export class LogBroker {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly broker: Broker,
    private readonly server: WireServer,
  ) {}

  static async start(options: LogBrokerOptions = {}): Promise<LogBroker> {
    const host = options.host ?? DEFAULTS.brokerHost;
    const port = options.port ?? DEFAULTS.brokerPort;
    const resolved = resolveOptions({
      dataDir: options.dataDir,
      fsync: options.fsync,
      topics: options.topics,
      token: options.token,
      retentionCheckMs: options.retentionCheckMs,
      subscriberBufferBytes: options.subscriberBufferBytes,
      listen: { host, port },
    });
    const broker = await acquireBroker(resolved, options.logger);
    try {
      const server = await startListener(broker, resolved, { ...options.wire, tls: options.tls });
      return new LogBroker(broker, server);
    } catch (e) {
      await releaseBroker(broker);
      throw e;
    }
  }

  /** Where the broker listens (the real port when started with port 0). */
  address(): { host: string; port: number } {
    return this.server.address();
  }

  /** The broker core (tests and tools in the same process). */
  get core(): Broker {
    return this.broker;
  }

  get connectionCount(): number {
    return this.server.connectionCount;
  }

  /** Stops listening, closes every connection (their sessions end), then releases the broker. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.server.close();
      } finally {
        await releaseBroker(this.broker);
      }
    })();
    return this.closing;
  }
}
