/**
 * The broker process of bench/soak.ts: a LogBroker started from a JSON
 * options argument (the CLI has no flags for per-topic retention or the
 * retention check interval). Prints {"listening": port, "pid": pid}; SIGTERM
 * closes it.
 *   node .build/bench/soak-broker.js '{"dataDir":"/tmp/x","port":0,"topics":{…},"retentionCheckMs":1000}'
 */
import { LogBroker, type LogBrokerOptions } from '../lib/wire/log-broker.js';

const options = JSON.parse(process.argv[2] ?? '{}') as LogBrokerOptions;
const warnings: string[] = [];
const broker = await LogBroker.start({
  ...options,
  logger: { log: () => {}, warn: m => warnings.push(String(m)), error: m => process.stderr.write(`broker error: ${String(m)}\n`) },
  wire: { logger: { log: () => {}, warn: () => {} } },
});
process.stdout.write(JSON.stringify({ listening: broker.address().port, pid: process.pid }) + '\n');
process.on('SIGTERM', () => {
  void broker.close().then(() => {
    if (warnings.length) process.stderr.write(`broker warnings (${warnings.length}), last: ${warnings.at(-1)}\n`);
    process.exit(0);
  });
});
