/**
 * ioredis, loaded only when a redis:// url is used (it is an optional peer
 * dependency), behind the few methods the driver needs.
 */
import { createHash } from 'node:crypto';
import { LogBusError } from '../../errors.js';

type Arg = string | Buffer | number;

/** The part of an ioredis client the driver uses. */
export interface RedisClient {
  call(command: string, ...args: Arg[]): Promise<unknown>;
  callBuffer(command: string, ...args: Arg[]): Promise<unknown>;
  duplicate(override?: Record<string, unknown>): RedisClient;
  connect(): Promise<void>;
  quit(): Promise<unknown>;
  disconnect(reconnect?: boolean): void;
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  psubscribe(...patterns: string[]): Promise<unknown>;
  punsubscribe(...patterns: string[]): Promise<unknown>;
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
  /** set by ioredis on Cluster clients */
  readonly isCluster?: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  removeAllListeners(event?: string): unknown;
  readonly status: string;
}

type RedisCtor = new (url: string, options: Record<string, unknown>) => RedisClient;
type ClusterCtor = new (nodes: Array<{ host: string; port: number }>, options: Record<string, unknown>) => RedisClient;

export interface Ioredis {
  Redis: RedisCtor;
  Cluster: ClusterCtor | undefined;
}

/**
 * ioredis's generic callBuffer() loses the command name under auto-pipelining
 * (only call() is special-cased), so buffer replies go through the named
 * `<command>Buffer` methods, which pipeline correctly. duplicate() keeps the fix
 * (and, on Cluster, puts per-connection options where Cluster wants them).
 */
function adapt(raw: RedisClient): RedisClient {
  const named = raw as unknown as Record<string, (...a: Arg[]) => Promise<unknown>>;
  raw.callBuffer = (command: string, ...args: Arg[]) => {
    const fn = named[`${command.toLowerCase()}Buffer`];
    if (typeof fn !== 'function') return Promise.reject(new Error(`ioredis has no ${command.toLowerCase()}Buffer`));
    return fn.apply(raw, args);
  };
  const duplicate = (raw.duplicate as (...a: unknown[]) => RedisClient).bind(raw);
  raw.duplicate = (override: Record<string, unknown> = {}) => {
    if (!raw.isCluster) return adapt(duplicate(override));
    const { enableAutoPipelining, ...perNode } = override;
    const base = (raw as unknown as { options: { redisOptions?: Record<string, unknown> } }).options;
    const clusterOverride: Record<string, unknown> = { redisOptions: { ...base.redisOptions, ...perNode } };
    if (enableAutoPipelining !== undefined) clusterOverride.enableAutoPipelining = enableAutoPipelining;
    return adapt(duplicate([], clusterOverride));
  };
  return raw;
}

interface ParsedUrl {
  tls: boolean;
  username?: string;
  password?: string;
  nodes: Array<{ host: string; port: number }>;
  params: URLSearchParams;
}

function parseUrl(url: string): ParsedUrl | undefined {
  const m = /^(rediss?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]*)[^?#]*(?:\?([^#]*))?/.exec(url);
  if (!m) return undefined;
  return {
    tls: m[1] === 'rediss',
    username: m[2] ? decodeURIComponent(m[2]) : undefined,
    password: m[3] ? decodeURIComponent(m[3]) : undefined,
    nodes: m[4].split(',').map(hp => {
      const [host, port] = hp.split(':');
      return { host: host || '127.0.0.1', port: Number(port || 6379) };
    }),
    params: new URLSearchParams(m[5] ?? ''),
  };
}

/**
 * Sentinel when the url names the monitored primary:
 * `redis://sentinel1:26379,sentinel2:26379?sentinel=mymaster` (the hosts are
 * sentinels; user and password are the primary's). ioredis asks the sentinels
 * for the primary and follows failovers.
 */
export function sentinelName(url: string): string | undefined {
  return parseUrl(url)?.params.get('sentinel') || undefined;
}

/**
 * Redis Cluster when the url lists several nodes (`redis://h1:7000,h2:7001`) or
 * says `?cluster=true`, and names no sentinel; otherwise one server (standalone,
 * or a primary by address).
 */
export function isClusterUrl(url: string): boolean {
  const u = parseUrl(url);
  if (!u || u.params.get('sentinel')) return false;
  return u.nodes.length > 1 || /^(true|1|yes)$/i.test(u.params.get('cluster') ?? '');
}

export function createClient(io: Ioredis, url: string, options: Record<string, unknown>): RedisClient {
  const name = sentinelName(url);
  if (name) {
    const u = parseUrl(url)!;
    const Sentinel = io.Redis as unknown as new (options: Record<string, unknown>) => RedisClient;
    return adapt(
      new Sentinel({
        ...options,
        sentinels: u.nodes,
        name,
        ...(u.username ? { username: u.username } : {}),
        ...(u.password ? { password: u.password } : {}),
        ...(u.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
      }),
    );
  }
  if (!isClusterUrl(url)) return adapt(new io.Redis(url, options));
  if (!io.Cluster) throw new LogBusError('INVALID_OPTION', "the installed 'ioredis' has no Cluster client; install ioredis 5 or 6");
  const u = parseUrl(url)!;
  const { enableAutoPipelining, lazyConnect, retryStrategy, ...perNode } = options;
  const redisOptions: Record<string, unknown> = { ...perNode };
  if (u.username) redisOptions.username = u.username;
  if (u.password) redisOptions.password = u.password;
  if (u.tls) redisOptions.tls = {};
  return adapt(
    new io.Cluster(u.nodes, {
      lazyConnect,
      enableAutoPipelining,
      clusterRetryStrategy: retryStrategy,
      // channels pinned to a slot (SSUBSCRIBE): RPC liveness must be counted where the requests go
      shardedSubscribers: true,
      scaleReads: 'master',
      redisOptions,
    }),
  );
}

let loaded: Promise<Ioredis> | undefined;

export function loadIoredis(): Promise<Ioredis> {
  loaded ??= importIoredis('ioredis').catch(e => {
    loaded = undefined; // installed later: try again next time
    throw e;
  });
  return loaded;
}

/** Imports the client package by name (a parameter, so a test can name one that is missing). */
export async function importIoredis(specifier: string): Promise<Ioredis> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (e) {
    throw new LogBusError(
      'INVALID_OPTION',
      "a redis:// url needs the package 'ioredis', an optional peer dependency of nestjs-logbus: run `npm install ioredis`",
      { cause: e },
    );
  }
  const ctor = (mod.Redis ?? mod.default) as RedisCtor | undefined;
  if (typeof ctor !== 'function') throw new LogBusError('INVALID_OPTION', "the installed 'ioredis' exports no Redis class; install ioredis 5 or 6");
  return { Redis: ctor, Cluster: mod.Cluster as ClusterCtor | undefined };
}

/** Options for every connection the driver opens. */
export function clientOptions(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    lazyConnect: true,
    // batch every command issued in one tick into one write (acks, replies, publishes)
    enableAutoPipelining: true,
    // ioredis arms this timer even for a socket that is already closed (a failed connect): keep it short
    disconnectTimeout: 200,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    ...extra,
  };
}

/** Connects, or fails at once with CONNECTION_LOST instead of retrying forever in the background. */
export async function connectOrFail(client: RedisClient, url: string): Promise<void> {
  try {
    await client.connect();
  } catch (e) {
    client.disconnect(false);
    throw new LogBusError('CONNECTION_LOST', `cannot reach Redis at ${redactUrl(url)}: ${(e as Error)?.message ?? e}`, { cause: e });
  }
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/** A Lua script run by EVALSHA, falling back to EVAL once Redis has forgotten it (restart, SCRIPT FLUSH). */
export class Script {
  readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(client: RedisClient, keys: Arg[], args: Arg[], buffers = false): Promise<unknown> {
    const call = (cmd: string, first: Arg) =>
      buffers ? client.callBuffer(cmd, first, keys.length, ...keys, ...args) : client.call(cmd, first, keys.length, ...keys, ...args);
    try {
      return await call('EVALSHA', this.sha);
    } catch (e) {
      if (!String((e as Error)?.message).startsWith('NOSCRIPT')) throw e;
      return call('EVAL', this.lua);
    }
  }
}

/** ioredis errors while Redis is away become CONNECTION_LOST; LogBusErrors pass through. */
export function asBusError(e: unknown, what: string): Error {
  if (e instanceof LogBusError) return e;
  const msg = (e as Error)?.message ?? String(e);
  if (/max retries|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|Stream isn't writeable|LOADING/i.test(msg)) {
    return new LogBusError('CONNECTION_LOST', `${what}: Redis is unreachable (${msg})`, { cause: e });
  }
  if (/^OOM|MISCONF|READONLY/.test(msg)) return new LogBusError('STORAGE', `${what}: Redis refused the write (${msg})`, { cause: e });
  return e instanceof Error ? e : new Error(msg);
}

export const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms));

/** XINFO-style flat [k1, v1, k2, v2, …] → object. */
export function flatToObject(arr: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!Array.isArray(arr)) return out;
  for (let i = 0; i + 1 < arr.length; i += 2) out[String(arr[i])] = arr[i + 1];
  return out;
}

/**
 * Keeps a blocking connection's CLIENT ID current (it changes on reconnect), so
 * another connection can wake it with CLIENT UNBLOCK. Not on Cluster: CLIENT
 * UNBLOCK cannot find the node there, so callers use short waits instead.
 */
export async function trackClientId(client: RedisClient, cluster: boolean, set: (id: string) => void): Promise<void> {
  if (cluster) return;
  const fetch = async () => set(String(await client.call('CLIENT', 'ID')));
  client.on('ready', () => void fetch().catch(() => undefined));
  await fetch();
}
