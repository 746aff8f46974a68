// Standalone logbus broker through the API (LogBroker.start), for when the CLI
// build is not there: node .build/bench/peers/broker.js --data DIR --port P
import { argValue, toParent } from './common.js';
import { loadLogBus } from './transports.js';

async function main() {
  const lib = await loadLogBus();
  if (typeof lib.LogBroker?.start !== 'function') throw new Error('nestjs-logbus does not export LogBroker.start yet');
  const broker = await lib.LogBroker.start({ dataDir: argValue('data'), port: Number(argValue('port')), host: '127.0.0.1' });
  const close = async () => {
    try {
      await broker.close();
    } finally {
      process.exit(0);
    }
  };
  process.on('message', (m: { type?: string }) => void (m?.type === 'close' && close()));
  process.on('SIGTERM', () => void close());
  process.on('disconnect', () => void close());
  toParent({ type: 'ready', pid: process.pid });
}

main().catch(err => {
  toParent({ type: 'fatal', error: String(err?.stack ?? err) });
  process.exit(1);
});
