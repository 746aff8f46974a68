// The transports under test: how each child process builds its Nest
// microservice (server side) and its ClientProxy (publisher side).
//
// nestjs-logbus is loaded lazily (dynamic import of the built lib) so that this
// file type-checks and the Nest peers run even while lib/ is incomplete; a
// logbus transport whose classes are missing is reported as skipped.
import { ClientProxyFactory, Transport } from '@nestjs/microservices';
import type { ClientProxy, MicroserviceOptions } from '@nestjs/microservices';

export const REDIS_HOST = process.env.BENCH_REDIS_HOST ?? '127.0.0.1';
export const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6379);
export const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
export const TCP_HOST = '127.0.0.1';
/** BENCH_TCP_PORT pins Nest TCP's port; else deploy() takes a free one. */
export const TCP_PORT = process.env.BENCH_TCP_PORT ? Number(process.env.BENCH_TCP_PORT) : undefined;

export const EVENT_TOPIC = 'bench.event';
export const RPC_PATTERN = 'bench.rpc';
export const DURABLE_TOPIC = 'bench.durable';
/** Durable topic written with no consumer: the publish-only rate, JetStream's shape. */
export const DURABLE_PUBLISH_TOPIC = 'bench.durable.publish';
export const CONSUMER_GROUP = 'bench';

/**
 * Where a child finds its bus. Passed from run.ts to every child as JSON.
 * For logbus: `hostBroker` makes this process embed the broker (dataDir +
 * listen on `port`); everyone else connects to `url`. Nest TCP: `port`.
 */
export interface Placement {
  hostBroker?: boolean;
  dataDir?: string;
  port?: number;
  url?: string;
}

export interface TransportDef {
  /** External broker that must be reachable first. */
  broker: 'redis' | 'nats' | null;
  /** Every subscriber process receives every event (pub/sub fan-out). */
  fanout: boolean;
  /** Supports durable topics consumed by a group (@Consume). */
  durable: boolean;
  /**
   * 'embedded': the first server process hosts the broker, the others connect by url;
   * 'standalone': a broker process of its own; 'inproc': server and publisher in one
   * process on the embedded broker (no wire: the ceiling of the Nest layer + broker).
   */
  logbus?: 'embedded' | 'standalone' | 'inproc';
  server(p: Placement, opts: ServerExtras): Promise<MicroserviceOptions>;
  client(p: Placement): Promise<ClientProxy>;
}

export interface ServerExtras {
  /** Default consumer group of a logbus server. */
  group?: string;
}

/** Topic configuration every logbus app in the bench shares: push events store nothing, like Redis/NATS pub/sub. */
export const LOGBUS_TOPICS = {
  [EVENT_TOPIC]: { durable: false },
} as const;

type LogBusLib = Record<string, any>;
let libCache: LogBusLib | undefined;

/** The built nestjs-logbus package root (lib/index.ts), or an error naming what is missing. */
export async function loadLogBus(): Promise<LogBusLib> {
  if (libCache) return libCache;
  const lib = (await import('../../lib/index.js')) as unknown as LogBusLib;
  const missing = ['LogBusServer', 'LogBusClient'].filter(n => typeof lib[n] !== 'function');
  if (missing.length) throw new Error(`nestjs-logbus does not export ${missing.join(', ')} yet`);
  libCache = lib;
  return lib;
}

function logbusServerOptions(p: Placement, extras: ServerExtras): Record<string, unknown> {
  const common = { topics: LOGBUS_TOPICS, ...(extras.group ? { group: extras.group } : {}) };
  if (p.hostBroker) return { ...common, dataDir: p.dataDir, ...(p.port ? { listen: { host: '127.0.0.1', port: p.port } } : {}) };
  return { ...common, url: p.url };
}

function logbusDef(kind: 'embedded' | 'standalone' | 'inproc'): TransportDef {
  return {
    broker: null,
    fanout: kind !== 'inproc',
    durable: true,
    logbus: kind,
    async server(p, extras) {
      const { LogBusServer } = await loadLogBus();
      return { strategy: new LogBusServer(logbusServerOptions(p, extras)) } as MicroserviceOptions;
    },
    async client(p) {
      const { LogBusClient } = await loadLogBus();
      // In process: the same dataDir shares the server's embedded broker.
      const where = kind === 'inproc' ? { dataDir: p.dataDir } : { url: p.url };
      return new LogBusClient({ ...where, topics: LOGBUS_TOPICS }) as ClientProxy;
    },
  };
}

/** nestjs-logbus on the running Redis: one key prefix per bench run, shared by its child processes through the environment. */
process.env.BENCH_RUN_ID ??= String(process.pid);
const LOGBUS_REDIS = {
  url: `redis://${REDIS_HOST}:${REDIS_PORT}`,
  prefix: `logbus-bench-${process.env.BENCH_RUN_ID}`,
  topics: LOGBUS_TOPICS,
};

function logbusRedisDef(): TransportDef {
  return {
    broker: 'redis',
    fanout: true,
    durable: true,
    async server(_p, extras) {
      const { LogBusServer } = await loadLogBus();
      return { strategy: new LogBusServer({ ...LOGBUS_REDIS, ...(extras.group ? { group: extras.group } : {}) }) } as MicroserviceOptions;
    },
    async client() {
      const { LogBusClient } = await loadLogBus();
      return new LogBusClient(LOGBUS_REDIS) as ClientProxy;
    },
  };
}

export const transports: Record<string, TransportDef> = {
  tcp: {
    broker: null,
    fanout: false, // a TCP ClientProxy talks to exactly one server
    durable: false,
    server: async p => ({ transport: Transport.TCP, options: { host: TCP_HOST, port: p.port } }),
    client: async p => ClientProxyFactory.create({ transport: Transport.TCP, options: { host: TCP_HOST, port: p.port } }) as ClientProxy,
  },
  redis: {
    broker: 'redis',
    fanout: true,
    durable: false,
    server: async () => ({ transport: Transport.REDIS, options: { host: REDIS_HOST, port: REDIS_PORT } }),
    client: async () => ClientProxyFactory.create({ transport: Transport.REDIS, options: { host: REDIS_HOST, port: REDIS_PORT } }) as ClientProxy,
  },
  nats: {
    broker: 'nats',
    fanout: true, // no `queue` option: every subscriber gets every message
    durable: false,
    server: async () => ({ transport: Transport.NATS, options: { servers: [NATS_URL] } }),
    client: async () => ClientProxyFactory.create({ transport: Transport.NATS, options: { servers: [NATS_URL] } }) as ClientProxy,
  },
  logbus: logbusDef('embedded'),
  'logbus-broker': logbusDef('standalone'),
  'logbus-inproc': logbusDef('inproc'),
  // Same Nest handlers, only the url changed: issue 7's comparison with Nest's own Redis transport on the same Redis.
  'logbus-redis': logbusRedisDef(),
};
