import 'reflect-metadata';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { NestFactory } from '@nestjs/core';
import { LogBusServer } from '../lib/index.js';
import { appModule } from './app.module.js';
import { BillingController } from './billing.controller.js';
import { log } from './log.js';
import { FLAKY_ORDER, POISON_ORDER, type Order } from './orders.js';
import { OrdersService } from './orders.service.js';

const ORDERS = 5;

async function waitFor(what: string, done: () => boolean, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  // the embedded broker keeps its log here; start from nothing each run
  const dataDir = join(tmpdir(), 'logbus-sample');
  await rm(dataDir, { recursive: true, force: true });

  const app = await NestFactory.createMicroservice(appModule(dataDir), {
    strategy: new LogBusServer({ dataDir, group: 'billing' }),
    logger: ['error'],
  });
  await app.listen();
  log('main', `listening on the embedded broker in ${dataDir}`);

  const orders = app.get(OrdersService);
  for (let id = 1; id <= ORDERS; id++) {
    const order: Order = { id, customer: `customer-${id % 2}`, amount: id * 10 };
    const { offset } = await orders.place(order);
    log('main', `placed order ${id} at offset ${offset}${id === FLAKY_ORDER ? ' (billing fails it once)' : ''}${id === POISON_ORDER ? ' (poison)' : ''}`);
  }
  await orders.cancel({ id: 2, customer: 'customer-0', amount: 20 });

  const billing = app.get(BillingController);
  await waitFor('billing', () => billing.billed.size === ORDERS - 1 && billing.deadLettered.size === 1);

  const count = await orders.count();
  log('rpc', `orders.count answered ${JSON.stringify(count)}`);
  for (const g of await orders.lag()) log('main', `group ${g.group}: committed ${g.committedOffset}, lag ${g.lag}`);

  await app.close();
  log('main', 'closed cleanly');
  await rm(dataDir, { recursive: true, force: true });
}

main().catch(e => {
  console.error(e);
  process.exitCode = 1;
});
