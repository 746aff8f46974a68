import { LogBroker } from '../../lib/index.js';
import { describeContract } from './contract.js';
import { tempDir } from '../e2e/helpers.js';

/** A LogBroker on a free port, started by the suite; every app and client connects by logbus:// url. */
describeContract('logbus://', async () => {
  const dir = await tempDir('contract-wire');
  // the broker's own warnings (a dropped message…) would only clutter the test output
  const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };
  let broker = await LogBroker.start({ dataDir: dir.path, port: 0, logger: quiet });
  const { port } = broker.address();
  return {
    options: { url: `logbus://127.0.0.1:${port}` },
    brokerNow: async () => Date.now(),
    queueMembershipSettleMs: 0,
    async restartBroker() {
      await broker.close();
      broker = await LogBroker.start({ dataDir: dir.path, port, logger: quiet });
    },
    async teardown() {
      await broker.close();
      await dir.remove();
    },
  };
});
