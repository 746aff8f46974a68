import { Injectable } from '@nestjs/common';
import { lastValueFrom } from 'rxjs';
import { LogBusClient } from '../lib/index.js';
import type { Order } from './orders.js';

/** The orders service publishes; LogBusModule injects its client. */
@Injectable()
export class OrdersService {
  constructor(private readonly bus: LogBusClient) {}

  /** Durable topic: resolves once the order is in the log, with its offset. */
  place(order: Order) {
    return this.bus.produce('orders.created', order, { key: order.customer });
  }

  /** Nest's own way to publish works too. */
  cancel(order: Order) {
    return lastValueFrom(this.bus.emit('orders.cancelled', order));
  }

  count() {
    return lastValueFrom(this.bus.send<{ billed: number; deadLettered: number }>('orders.count', {}));
  }

  lag() {
    return this.bus.groups('orders.created');
  }
}
