import { Module, type DynamicModule } from '@nestjs/common';
import { LogBusModule, type LogBusOptions } from '../lib/index.js';
import { BillingController } from './billing.controller.js';
import { NotifierController } from './notifier.controller.js';
import { OrdersService } from './orders.service.js';

/** One process for the sample; in real life each controller may live in its own service. */
export function appModule(bus: LogBusOptions): DynamicModule {
  @Module({})
  class AppModule {}
  return {
    module: AppModule,
    imports: [LogBusModule.forRoot({ ...bus, isGlobal: true })],
    controllers: [NotifierController, BillingController],
    providers: [OrdersService],
  };
}
