import { Controller } from '@nestjs/common';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import { LogBusContext, Subscribe } from '../lib/index.js';
import type { Order } from './orders.js';
import { log } from './log.js';

/** Push: every live subscriber gets every order as it is published; nothing to ack. */
@Controller()
export class NotifierController {
  @Subscribe('orders.*')
  notify(@Payload() order: Order, @Ctx() ctx: LogBusContext): void {
    log('push', `notifier got ${ctx.getTopic()} #${order.id} (offset ${ctx.getOffset()})`);
  }

  // plain Nest: the same as @Subscribe('orders.created')
  @EventPattern('orders.created')
  audit(@Payload() order: Order): void {
    log('push', `audit saw order ${order.id} for ${order.customer}`);
  }
}
