#!/usr/bin/env node
/**
 * The `logbus` command: run a broker, or look at one over the wire.
 * Exit codes: 0 done, 1 the operation failed (the LogBusError code is shown),
 * 2 bad usage.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isLogBusError, LogBusError } from '../errors.js';
import { DEFAULTS, type FsyncMode } from '../options.js';
import type { ReadMessage, TopicInfo } from '../connection/types.js';
import { WireConnection } from '../wire/client.js';
import { LogBroker } from '../wire/log-broker.js';
import { formatTable } from './table.js';

const DEFAULT_URL = `logbus://${DEFAULTS.brokerHost}:${DEFAULTS.brokerPort}`;

class UsageError extends Error {}

const CONNECT_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const CONNECT_HELP = `  --url URL      broker address [${DEFAULT_URL}]; TLS: add ?tls=true&ca=FILE
  --token T      the broker's token [env LOGBUS_TOKEN]
  -h, --help     this help`;

const HELP: Record<string, string> = {
  main: `Usage: logbus <command> [options]

Commands:
  broker     run a broker on this machine
  topics     list topics with their offsets and size
  tail       print a topic's messages as JSON lines, and follow new ones
  publish    publish one JSON message
  groups     list a topic's consumer groups with their lag

Run 'logbus <command> --help' for a command's options.`,
  broker: `Usage: logbus broker [options]

Runs a broker that Nest apps reach with url 'logbus://host:port'.
SIGTERM or SIGINT (Ctrl-C) shuts it down cleanly.

  --data DIR                      where the log lives [${DEFAULTS.dataDir}]
  --port N                        TCP port [${DEFAULTS.brokerPort}]
  --host H                        address to bind [${DEFAULTS.brokerHost}]
  --token T                       require this token from clients [env LOGBUS_TOKEN]
  --fsync always|interval|never   durability of publishes [${DEFAULTS.fsync}]
  --tls-cert FILE --tls-key FILE  serve TLS with this certificate (PEM)
  --tls-ca FILE                   and require client certificates signed by this CA
  -h, --help                      this help

Clients reach a TLS broker with 'logbus://host:port?tls=true&ca=/path/ca.pem'.`,
  topics: `Usage: logbus topics [options]

Lists every topic: durable or not, earliest and next offset, bytes on disk.

${CONNECT_HELP}`,
  tail: `Usage: logbus tail TOPIC [options]

Prints messages as JSON lines {offset, time, key, headers, data}, oldest first,
then keeps printing new ones until Ctrl-C (like kafka-console-consumer).

  --from earliest|latest|OFFSET   where to start [earliest]
  --no-follow                     stop at the end instead of waiting for more
  --max N                         stop after N messages
${CONNECT_HELP}`,
  publish: `Usage: logbus publish TOPIC JSON [options]

Publishes one message (its data is the JSON given) and prints its offset.

  --key K            message key (same key: processed in order)
  --header k=v       a header; repeat for more
${CONNECT_HELP}`,
  groups: `Usage: logbus groups TOPIC [options]

Lists the consumer groups of a topic: committed offset, lag, messages in flight.

${CONNECT_HELP}`,
};

function parse<O extends ParseArgsConfig['options']>(args: string[], options: O, positionals: number) {
  try {
    const r = parseArgs({ args, options, allowPositionals: true, allowNegative: true, strict: true });
    if (!(r.values as { help?: boolean }).help && r.positionals.length !== positionals) {
      throw new UsageError(
        positionals === 0 ? `unexpected argument '${r.positionals[0]}'` : `expected ${positionals} argument(s), got ${r.positionals.length}`,
      );
    }
    return r;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message);
  }
}

async function connect(values: { url?: string; token?: string }): Promise<WireConnection> {
  const c = new WireConnection(
    { url: values.url ?? DEFAULT_URL, token: values.token ?? (process.env.LOGBUS_TOKEN || undefined), rpcTimeoutMs: 10_000 },
    { clientName: 'logbus-cli', outageWaitMs: 3000 },
  );
  await c.connect();
  return c;
}

async function withConnection<T>(values: { url?: string; token?: string }, fn: (c: WireConnection) => Promise<T>): Promise<T> {
  const c = await connect(values);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

function out(line: string): void {
  process.stdout.write(line + '\n');
}

// ───────────────────────────── commands ─────────────────────────────

async function broker(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    {
      data: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      token: { type: 'string' },
      fsync: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    0,
  );
  if (values.help) return help('broker');
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new UsageError('--tls-cert and --tls-key go together');
  const readPem = (flag: string, file: string | undefined) => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (e) {
      throw new UsageError(`${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const cert = readPem('--tls-cert', values['tls-cert']);
  const key = readPem('--tls-key', values['tls-key']);
  const ca = readPem('--tls-ca', values['tls-ca']);
  const port = values.port === undefined ? DEFAULTS.brokerPort : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, got '${values.port}'`);
  if (values.fsync !== undefined && !['always', 'interval', 'never'].includes(values.fsync)) {
    throw new UsageError(`--fsync must be always, interval or never, got '${values.fsync}'`);
  }
  const dataDir = values.data ?? DEFAULTS.dataDir;
  const b = await LogBroker.start({
    dataDir,
    port,
    host: values.host,
    token: values.token ?? (process.env.LOGBUS_TOKEN || undefined),
    fsync: values.fsync as FsyncMode | undefined,
    tls: cert && key ? { cert, key, ca } : undefined,
  });
  const { host, port: bound } = b.address();
  out(`logbus broker listening on logbus://${host}:${bound}${cert ? ' (TLS)' : ''} (data ${dataDir}, pid ${process.pid})`);
  return new Promise<number>(resolve => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        process.stderr.write(`logbus: ${signal} again, exiting without waiting\n`);
        process.exit(1);
      }
      stopping = true;
      out(`logbus broker: ${signal}, shutting down`);
      b.close().then(
        () => {
          out('logbus broker stopped');
          resolve(0);
        },
        (e: unknown) => {
          process.stderr.write(`logbus: shutdown failed: ${(e as Error).message}\n`);
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

async function topics(args: string[]): Promise<number> {
  const { values } = parse(args, CONNECT_OPTIONS, 0);
  if (values.help) return help('topics');
  const list = await withConnection(values, c => c.topics());
  list.sort((a, b) => a.name.localeCompare(b.name));
  out(
    formatTable(
      ['TOPIC', 'DURABLE', 'EARLIEST', 'NEXT', 'MESSAGES', 'BYTES'],
      list.map(t => [t.name, t.durable ? 'yes' : 'no', t.earliestOffset, t.nextOffset, t.nextOffset - t.earliestOffset, t.bytes]),
    ),
  );
  return 0;
}

async function groups(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, CONNECT_OPTIONS, 1);
  if (values.help) return help('groups');
  const list = await withConnection(values, c => c.groups(positionals[0]));
  list.sort((a, b) => a.group.localeCompare(b.group));
  out(formatTable(['GROUP', 'COMMITTED', 'LAG', 'IN-FLIGHT'], list.map(g => [g.group, g.committedOffset, g.lag, g.inFlight])));
  return 0;
}

async function publish(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    { ...CONNECT_OPTIONS, key: { type: 'string' }, header: { type: 'string', multiple: true } },
    2,
  );
  if (values.help) return help('publish');
  const [topic, text] = positionals;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`the message must be JSON (quote strings: '"hello"'): ${(e as Error).message}`);
  }
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const eq = h.indexOf('=');
    if (eq <= 0) throw new UsageError(`--header must be name=value, got '${h}'`);
    headers[h.slice(0, eq)] = h.slice(eq + 1);
  }
  const [r] = await withConnection(values, c => c.produce(topic, [{ value: Buffer.from(JSON.stringify(data)), key: values.key, headers }]));
  out(r.offset === undefined ? `published to ${r.topic} (not durable: no offset)` : `published to ${r.topic} at offset ${r.offset}`);
  return 0;
}

function messageLine(m: Omit<ReadMessage, 'offset'> & { offset: number | undefined }): string {
  const text = m.value.toString('utf8');
  let data: unknown = text;
  try {
    data = text.length === 0 ? null : JSON.parse(text);
  } catch {
    // not JSON: shown as a string
  }
  return JSON.stringify({ offset: m.offset, time: new Date(m.timestamp).toISOString(), key: m.key, headers: m.headers, data });
}

async function tail(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    { ...CONNECT_OPTIONS, from: { type: 'string' }, follow: { type: 'boolean', default: true }, max: { type: 'string' } },
    1,
  );
  if (values.help) return help('tail');
  const topic = positionals[0];
  const from = values.from ?? 'earliest';
  if (from !== 'earliest' && from !== 'latest' && !/^\d+$/.test(from)) throw new UsageError(`--from must be earliest, latest or an offset, got '${from}'`);
  const max = values.max === undefined ? Infinity : Number(values.max);
  if (!(max > 0) || (max !== Infinity && !Number.isInteger(max))) throw new UsageError(`--max must be a positive integer, got '${values.max}'`);

  const c = await connect(values);
  let stopped = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopped = true;
    wake?.();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const info: TopicInfo | undefined = (await c.topics()).find(t => t.name === topic);
    if (info && !info.durable) return await tailPush(c, topic, max, values.follow, () => stopped, w => (wake = w));
    let next = from === 'earliest' ? (info?.earliestOffset ?? 0) : from === 'latest' ? (info?.nextOffset ?? 0) : Number(from);
    let printed = 0;
    if (process.stderr.isTTY && values.follow) process.stderr.write(`following ${topic} from offset ${next} (Ctrl-C to stop)\n`);
    while (!stopped && printed < max) {
      const batch = info || (await c.topics()).some(t => t.name === topic) ? await c.read(topic, next, Math.min(1000, max - printed)) : [];
      for (const m of batch) {
        out(messageLine(m));
        next = m.offset + 1;
        if (++printed >= max) break;
      }
      if (batch.length === 0) {
        if (!values.follow) break;
        await new Promise<void>(r => {
          const t = setTimeout(r, 200);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
    }
    return 0;
  } finally {
    await c.close();
  }
}

/** A non-durable topic has no log to read: show what is published from now on. */
async function tailPush(
  c: WireConnection,
  topic: string,
  max: number,
  follow: boolean,
  stopped: () => boolean,
  setWake: (w: () => void) => void,
): Promise<number> {
  if (!follow) return 0;
  process.stderr.write(`${topic} is not durable: showing messages published from now on (Ctrl-C to stop)\n`);
  let printed = 0;
  await new Promise<void>(resolve => {
    setWake(resolve);
    void c.subscribe({ pattern: topic }, d => {
      if (printed >= max) return;
      out(messageLine(d));
      if (++printed >= max) resolve();
    });
    if (stopped()) resolve();
  });
  return 0;
}

function help(command: string): number {
  out(HELP[command] ?? HELP.main);
  return 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { broker, topics, tail, publish, groups };

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    if (command === 'help' && rest[0]) return help(rest[0]);
    out(HELP.main);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(`logbus: unknown command '${command}'\n\n${HELP.main}\n`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`logbus ${command}: ${e.message}\nRun 'logbus ${command} --help' for usage.\n`);
      return 2;
    }
    const msg = isLogBusError(e) ? e.message : `${(e as Error)?.message ?? e}`;
    process.stderr.write(`logbus ${command}: ${msg}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  code => {
    process.exitCode = code;
    // Sockets and timers are closed by now; exit explicitly so a stray handle cannot keep a finished command alive.
    setImmediate(() => process.exit(code));
  },
  (e: unknown) => {
    process.stderr.write(`logbus: ${e instanceof LogBusError ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
