// Publisher / requester child process: one ClientProxy, driven over IPC
// (the commands are in publisher.ts).
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { argValue, toParent } from './common.js';
import type { IpcMessage } from './common.js';
import { connectPublisher, handlePublisherCommand } from './publisher.js';
import { transports } from './transports.js';
import type { Placement } from './transports.js';

async function main() {
  Logger.overrideLogger(['error', 'warn']); // the client runs outside a Nest app
  const name = argValue('transport')!;
  const placement = JSON.parse(argValue('placement', '{}')!) as Placement;
  const def = transports[name];
  if (!def) throw new Error(`unknown transport ${name}`);
  const client = await def.client(placement);
  await connectPublisher(def, client);

  process.on('message', async (m: IpcMessage) => {
    if (m?.type !== 'close') {
      await handlePublisherCommand(client, m);
      return;
    }
    try {
      await client.close();
    } finally {
      toParent({ type: 'closed' });
      process.exit(0);
    }
  });
  process.on('disconnect', () => process.exit(0));
  toParent({ type: 'ready', pid: process.pid });
}

main().catch(err => {
  toParent({ type: 'fatal', error: String(err?.stack ?? err) });
  process.exit(1);
});
