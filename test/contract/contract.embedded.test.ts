import { openBrokerCount } from '../../lib/broker/registry.js';
import { describeContract } from './contract.js';
import { tempDir } from '../e2e/helpers.js';

/** The embedded broker (no url): a file log in a fresh temp dataDir, shared by every app and client of this file. */
describeContract('embedded', async () => {
  const dir = await tempDir('contract');
  return {
    options: { dataDir: dir.path },
    brokerNow: async () => Date.now(),
    queueMembershipSettleMs: 0,
    async restartBroker() {
      // the last close() released the dataDir's broker: the next connect reopens it from disk
      if (openBrokerCount() !== 0) throw new Error(`${openBrokerCount()} embedded broker(s) still open: the restart would not be one`);
    },
    teardown: () => dir.remove(),
  };
});
