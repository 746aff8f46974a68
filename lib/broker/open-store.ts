import type { FsyncMode } from '../options.js';
import { openStore } from '../store/index.js';
import type { LogStore, StoreLogger } from '../store/types.js';

/** The store for a dataDir: the file store (with its dataDir lock), or the in-memory twin for ':memory:'. */
export function openBrokerStore(dataDir: string, fsync: FsyncMode, logger: StoreLogger): Promise<LogStore> {
  return openStore({ dataDir, fsync, logger });
}
