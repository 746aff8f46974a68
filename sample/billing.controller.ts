import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { Consume, LogBusContext } from '../lib/index.js';
import { FLAKY_ORDER, POISON_ORDER, type Order } from './orders.js';
import { log } from './log.js';

/** Pull: the billing group reads the durable log at its own pace, acks, retries, dead-letters. */
@Controller()
export class BillingController {
  readonly billed = new Set<number>();
  readonly deadLettered = new Set<number>();

  @Consume('orders.created', { group: 'billing', maxDeliver: 3, backoffMs: [200, 400] })
  bill(@Payload() order: Order, @Ctx() ctx: LogBusContext): void {
    if (order.id === POISON_ORDER || (order.id === FLAKY_ORDER && ctx.getDeliveryCount() === 1)) {
      log('pull', `billing failed order ${order.id} (delivery ${ctx.getDeliveryCount()})`);
      // an RpcException is a failure the handler expects: Nest does not log a stack for it
      throw new RpcException(`card declined for order ${order.id}`);
    }
    this.billed.add(order.id);
    log('pull', `billing processed order ${order.id} (delivery ${ctx.getDeliveryCount()}, offset ${ctx.getOffset()})`);
  }

  @Consume('orders.created.dlq', { group: 'ops' })
  deadLetter(@Payload() order: Order, @Ctx() ctx: LogBusContext): void {
    const h = ctx.getHeaders();
    this.deadLettered.add(order.id);
    log('dlq', `order ${order.id} gave up after ${h['x-logbus-deliveries']} deliveries: ${h['x-logbus-error']}`);
  }

  // request/response: one live instance answers
  @MessagePattern('orders.count')
  count(): { billed: number; deadLettered: number } {
    return { billed: this.billed.size, deadLettered: this.deadLettered.size };
  }
}
