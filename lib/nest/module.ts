import { ConfigurableModuleBuilder, Inject, Module, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { LogBusOptions } from '../options.js';
import { LogBusClient } from './client.js';

const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN } = new ConfigurableModuleBuilder<LogBusOptions>({ moduleName: 'LogBus' })
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: false }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();

/** The options token of LogBusModule, for code that wants to read the configuration. */
export const LOGBUS_MODULE_OPTIONS = MODULE_OPTIONS_TOKEN;

/**
 * `LogBusModule.forRoot({ ...options, isGlobal? })` or
 * `LogBusModule.forRootAsync({ imports, inject, useFactory, isGlobal? })`:
 * provides an injectable LogBusClient, connected when the module starts and
 * closed when it is destroyed.
 */
@Module({
  providers: [
    {
      provide: LogBusClient,
      useFactory: (options: LogBusOptions) => new LogBusClient(options),
      inject: [MODULE_OPTIONS_TOKEN],
    },
  ],
  exports: [LogBusClient, MODULE_OPTIONS_TOKEN],
})
export class LogBusModule extends ConfigurableModuleClass implements OnModuleInit, OnModuleDestroy {
  constructor(@Inject(LogBusClient) private readonly client: LogBusClient) {
    super();
  }

  async onModuleInit(): Promise<void> {
    await this.client.connect();
  }

  async onModuleDestroy(): Promise<void> {
    await this.client.close();
  }
}
