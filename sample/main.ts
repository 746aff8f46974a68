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

/** Deletes the sample's data: the embedded log directory, or its prefix's keys on Redis. */
async function removeData(bus: { dataDir?: string; url?: string; prefix?: string }): Promise<void> {
  if (bus.dataDir) return rm(bus.dataDir, { recursive: true, force: true });
  if (!bus.url?.startsWith('redis')) return; // a logbus:// broker owns its data
  const { Redis } = await import('ioredis');
  const redis = new Redis(bus.url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${bus.prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

async function main(): Promise<void> {
  // LOGBUS_URL unset: the embedded broker; set (e.g. redis://127.0.0.1:6379): the same app on that engine
  const url = process.env.LOGBUS_URL || undefined;
  const bus = url ? { url, prefix: 'logbus-sample' } : { dataDir: join(tmpdir(), 'logbus-sample') };
  await removeData(bus); // start from nothing each run

  const app = await NestFactory.createMicroservice(appModule(bus), {
    strategy: new LogBusServer({ ...bus, group: 'billing' }),
    logger: ['error'],
  });
  await app.listen();
  log('main', url ? `listening on ${url} (prefix ${bus.prefix})` : `listening on the embedded broker in ${bus.dataDir}`);

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
  await removeData(bus);
}

main().catch(e => {
  console.error(e);
  process.exitCode = 1;
});
