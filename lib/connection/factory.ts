import type { BrokerLogger } from '../broker/logger.js';
import type { ResolvedOptions } from '../options.js';
import { DeferredConnection } from './deferred.js';
import { createEmbeddedConnection } from './in-process.js';
import { ListeningConnection } from './listening.js';
import type { BusConnection } from './types.js';

/**
 * The connection for resolved options: unset url → the embedded broker in
 * this process (shared per dataDir; with `listen` also served to remote
 * clients while the connection is open); 'logbus://' → the wire client;
 * 'redis://' / 'rediss://' → the Redis driver. `logger` receives the
 * broker's or the driver's warnings (the Nest layer passes Nest's Logger).
 *
 * Remote drivers are imported on connect(): a user of the embedded broker
 * never loads them, and one that cannot load (ioredis missing) fails with a
 * clear LogBusError only for the user who asked for it.
 */
export function createConnection(options: ResolvedOptions, logger?: BrokerLogger): BusConnection {
  const url = options.url;
  // the first user of a dataDir opens its broker, so its logger is the broker's
  if (url === undefined) return options.listen ? new ListeningConnection(options, logger) : createEmbeddedConnection(options, logger);
  if (url.startsWith('logbus://')) {
    return new DeferredConnection('logbus:// (wire)', async () => (await import('../wire/client.js')).createWireConnection(
        options,
        logger && { logger: { log: m => logger.log?.(m), warn: m => logger.warn(m) } },
      ),
    );
  }
  // resolveOptions admits only logbus://, redis:// and rediss://
  return new DeferredConnection('redis', async () => (await import('./redis/index.js')).createRedisConnection(options, logger));
}
