import { join } from 'node:path';
import { LogBusError, storageError } from '../errors.js';
import { DEFAULTS, type TopicConfig } from '../options.js';
import { validateTopicName } from '../topic.js';
import { Checkpoint, Coalescer } from './checkpoint.js';
import { checkExtras, copyGroupOffset, loadedGroupOffset } from './group-offset-extras.js';
import { DEFAULT_MAX_OPEN_FILES, FdPool, MIN_MAX_OPEN_FILES } from './fd-pool.js';
import { FileTopicLog, type LogIOOptions } from './file-topic-log.js';
import { type StoreIO, nodeIO } from './io.js';
import { acquireLock } from './lock.js';
import type { GroupOffset, LogStore, StoreLogger, StoreOptions, TopicLog, TopicLogConfig } from './types.js';

export interface FileStoreOptions extends StoreOptions {
  /** File access; tests pass a fault-injecting one. Defaults to node:fs. */
  io?: StoreIO;
  /** Per topic: recently written batches kept in memory for tailing readers. Default 4 MiB. */
  cacheBytes?: number;
  /** All topics together (plus at most one chunk per topic). Default 64 MiB. */
  cacheTotalBytes?: number;
  /** Segment and index files open at once, all topics together (fd-pool.ts). Default 1024. */
  maxOpenFiles?: number;
}

export const DEFAULT_CACHE_BYTES = 4 * 1024 * 1024;
export const DEFAULT_CACHE_TOTAL_BYTES = 64 * 1024 * 1024;
const MAX_GROUP_NAME = 255;

const consoleStoreLogger: StoreLogger = {
  warn: m => console.warn(m),
  error: m => console.error(m),
};

/**
 * The durable store: `<dataDir>/LOCK`, `<dataDir>/topics/<topic>/` logs,
 * and two checkpoints (group offsets, topic configs) in `<dataDir>`.
 */
export class FileStore implements LogStore {
  private readonly logs = new Map<string, Promise<FileTopicLog>>();
  private readonly offsets = new Map<string, GroupOffset>();
  private configs: Record<string, TopicConfig> = {};
  private closed = false;
  private readonly offsetsSaver: Coalescer;
  private readonly configsSaver: Coalescer;

  private constructor(
    readonly dataDir: string,
    private readonly names: Set<string>,
    private readonly ioOptions: LogIOOptions,
    private readonly offsetsCkpt: Checkpoint<GroupOffset[]>,
    private readonly configsCkpt: Checkpoint<Record<string, TopicConfig>>,
    private readonly release: () => void,
  ) {
    this.offsetsSaver = new Coalescer(() => this.offsetsCkpt.save([...this.offsets.values()]));
    this.configsSaver = new Coalescer(() => this.configsCkpt.save({ ...this.configs }));
  }

  private get topicsDir(): string {
    return join(this.dataDir, 'topics');
  }

  static async open(opts: FileStoreOptions): Promise<FileStore> {
    if (!opts || typeof opts.dataDir !== 'string' || opts.dataDir === '' || opts.dataDir === ':memory:') {
      throw new LogBusError('INVALID_OPTION', `FileStore needs a dataDir path, got ${JSON.stringify(opts?.dataDir)}`);
    }
    if (!['always', 'interval', 'never'].includes(opts.fsync)) {
      throw new LogBusError('INVALID_OPTION', `option 'fsync' is ${JSON.stringify(opts.fsync)}; expected 'always', 'interval' or 'never'`);
    }
    const maxOpenFiles = opts.maxOpenFiles ?? DEFAULT_MAX_OPEN_FILES;
    if (!Number.isSafeInteger(maxOpenFiles) || maxOpenFiles < MIN_MAX_OPEN_FILES) {
      throw new LogBusError('INVALID_OPTION', `option 'maxOpenFiles' is ${JSON.stringify(opts.maxOpenFiles)}; expected an integer >= ${MIN_MAX_OPEN_FILES}`);
    }
    const io = opts.io ?? nodeIO;
    const logger = opts.logger ?? consoleStoreLogger;
    const dataDir = opts.dataDir;
    const topicsDir = join(dataDir, 'topics');
    try {
      await io.mkdir(dataDir);
    } catch (e) {
      throw storageError(`creating dataDir ${dataDir}`, e);
    }
    const release = acquireLock(dataDir);
    try {
      const isNew = (await io.size(topicsDir)) < 0;
      await io.mkdir(topicsDir);
      if (isNew) await io.fsyncDir(dataDir);
      const names = new Set<string>();
      for (const n of await io.readdir(topicsDir)) {
        try {
          validateTopicName(n);
          names.add(n);
        } catch {
          logger.warn(`logbus store: ignoring ${join(topicsDir, n)}: not a valid topic name`);
        }
      }
      const offsetsCkpt = new Checkpoint<GroupOffset[]>(io, dataDir, 'group-offsets', logger);
      const configsCkpt = new Checkpoint<Record<string, TopicConfig>>(io, dataDir, 'topic-configs', logger);
      const store = new FileStore(
        dataDir,
        names,
        {
          io,
          fsync: opts.fsync,
          fsyncIntervalMs: opts.fsyncIntervalMs ?? DEFAULTS.fsyncIntervalMs,
          logger,
          cacheBytes: opts.cacheBytes ?? DEFAULT_CACHE_BYTES,
          cacheBudget: { used: 0, limit: opts.cacheTotalBytes ?? DEFAULT_CACHE_TOTAL_BYTES },
          fds: new FdPool(maxOpenFiles),
        },
        offsetsCkpt,
        configsCkpt,
        release,
      );
      const offsets = await offsetsCkpt.load(!isNew);
      if (Array.isArray(offsets)) for (const g of offsets) store.offsets.set(key(g.topic, g.group), loadedGroupOffset(g, m => logger.warn(m)));
      store.configs = (await configsCkpt.load(!isNew)) ?? {};
      if (isNew) {
        // From now on a missing checkpoint means lost data, which load() warns about.
        await offsetsCkpt.save([]);
        await configsCkpt.save({});
      }
      return store;
    } catch (e) {
      release();
      throw storageError(`opening the store in ${dataDir}`, e);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new LogBusError('CLOSED', `the store in ${this.dataDir} is closed`);
  }

  topicNames(): string[] {
    return [...this.names];
  }

  async openTopic(name: string, config: TopicLogConfig): Promise<TopicLog> {
    validateTopicName(name);
    this.checkOpen();
    const existing = this.logs.get(name);
    if (existing) {
      const log = await existing;
      log.updateConfig(config);
      return log;
    }
    const isNew = !this.names.has(name);
    const opening = (async () => {
      const log = await FileTopicLog.open(name, join(this.topicsDir, name), config, this.ioOptions);
      if (isNew) {
        try {
          await this.ioOptions.io.fsyncDir(this.topicsDir);
        } catch (e) {
          await log.close();
          throw storageError(`syncing ${this.topicsDir}`, e);
        }
      }
      return log;
    })();
    this.logs.set(name, opening);
    try {
      const log = await opening;
      this.names.add(name);
      return log;
    } catch (e) {
      this.logs.delete(name);
      throw e;
    }
  }

  async deleteTopic(name: string): Promise<void> {
    validateTopicName(name);
    this.checkOpen();
    const opening = this.logs.get(name);
    this.logs.delete(name);
    if (opening) await (await opening.catch(() => undefined))?.close();
    try {
      await this.ioOptions.io.rmdir(join(this.topicsDir, name));
      await this.ioOptions.io.fsyncDir(this.topicsDir);
    } catch (e) {
      throw storageError(`deleting topic '${name}'`, e);
    }
    this.names.delete(name);
  }

  async loadTopicConfigs(): Promise<Record<string, TopicConfig>> {
    return structuredClone(this.configs);
  }

  async saveTopicConfig(name: string, config: TopicConfig): Promise<void> {
    validateTopicName(name);
    this.checkOpen();
    this.configs[name] = structuredClone(config);
    await this.configsSaver.request().catch(e => {
      throw storageError('saving topic configs', e);
    });
  }

  async loadGroupOffsets(): Promise<GroupOffset[]> {
    return [...this.offsets.values()].map(copyGroupOffset);
  }

  async commitGroupOffsets(entries: GroupOffset[]): Promise<void> {
    this.checkOpen();
    if (!Array.isArray(entries)) throw new LogBusError('INVALID_ARGUMENT', 'commitGroupOffsets needs an array');
    for (const e of entries) {
      validateTopicName(e?.topic);
      if (typeof e.group !== 'string' || e.group.length === 0 || e.group.length > MAX_GROUP_NAME) {
        throw new LogBusError('INVALID_ARGUMENT', `group name ${JSON.stringify(e.group)} must be a string of 1 to ${MAX_GROUP_NAME} characters`);
      }
      if (!Number.isSafeInteger(e.offset) || e.offset < 0) {
        throw new LogBusError('INVALID_ARGUMENT', `offset ${e.offset} for group '${e.group}' on '${e.topic}' must be a non-negative integer`);
      }
      checkExtras(e);
    }
    for (const e of entries) this.offsets.set(key(e.topic, e.group), copyGroupOffset(e));
    await this.offsetsSaver.request().catch(e => {
      throw storageError('saving group offsets', e);
    });
  }

  async deleteGroupOffset(topic: string, group: string): Promise<void> {
    this.checkOpen();
    if (!this.offsets.delete(key(topic, group))) return;
    await this.offsetsSaver.request().catch(e => {
      throw storageError('saving group offsets', e);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      const logs = await Promise.all([...this.logs.values()].map(p => p.catch(() => undefined)));
      const errors: unknown[] = [];
      for (const log of logs) await log?.close().catch(e => errors.push(e));
      this.logs.clear();
      await this.offsetsSaver.idle();
      await this.configsSaver.idle();
      if (errors.length) throw storageError(`closing the store in ${this.dataDir}`, errors[0]);
    } finally {
      this.release();
    }
  }
}

function key(topic: string, group: string): string {
  return `${topic}\u0000${group}`;
}
