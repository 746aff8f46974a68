// The README's quick start, runnable: `npx tsc -p tsconfig.json && node .build/sample/quick-start.js`.
// (An app imports from 'nestjs-logbus'; inside this repo the same exports come from ../lib.)
import 'reflect-metadata';
import { rmSync } from 'node:fs';
import { Controller, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { Consume, LogBusClient, LogBusContext, LogBusModule, LogBusServer, Subscribe } from '../lib/index.js';

interface Order {
  id: number;
  customerId: string;
}

const billed: number[] = [];
async function charge(order: Order): Promise<void> {
  billed.push(order.id);
}

@Controller()
class OrdersController {
  // push: every live instance gets every message published after it subscribed
  @Subscribe('orders.*')
  notify(@Payload() order: Order, @Ctx() ctx: LogBusContext) {
    console.log('push', ctx.getTopic(), ctx.getOffset());
  }

  // pull: the 'billing' group reads the durable log, at least once, acked when this returns
  @Consume('orders.created', { group: 'billing', concurrency: 8, maxDeliver: 5 })
  async bill(@Payload() order: Order, @Ctx() ctx: LogBusContext) {
    await charge(order); // throw → retried after the backoff, then dead-lettered to 'orders.created.dlq'
    console.log('pull', ctx.getGroup(), ctx.getOffset(), 'delivery', ctx.getDeliveryCount());
  }

  // request/response: exactly one live instance answers
  @MessagePattern('orders.count')
  count() {
    return billed.length;
  }
}

@Injectable()
class OrdersService {
  constructor(private readonly bus: LogBusClient) {}
  place(order: Order) {
    // key: same-key messages are processed in publish order, never two at once
    return this.bus.produce('orders.created', order, { key: order.customerId }); // → { topic, offset }
  }
}

@Module({
  imports: [LogBusModule.forRoot({ dataDir: './data', isGlobal: true })],
  controllers: [OrdersController],
  providers: [OrdersService],
})
class AppModule {}

rmSync('./data', { recursive: true, force: true });
const app = await NestFactory.createMicroservice(AppModule, {
  strategy: new LogBusServer({ dataDir: './data', group: 'billing' }),
  logger: ['error', 'warn'],
});
await app.listen();

const orders = app.get(OrdersService);
for (let id = 1; id <= 3; id++) console.log('produced', await orders.place({ id, customerId: `c${id % 2}` }));
while (billed.length < 3) await new Promise(r => setTimeout(r, 10));
console.log('rpc orders.count =', await lastValueFrom(app.get(LogBusClient).send('orders.count', {})));
await app.close();
rmSync('./data', { recursive: true, force: true });
