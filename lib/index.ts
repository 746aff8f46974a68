// The public surface (API.md) and nothing else.
export { LogBusError } from './errors.js';
export type { LogBusErrorCode } from './errors.js';
export type { LogBusOptions, TopicConfig, RetentionConfig, FsyncMode, Duration } from './options.js';
export { LOGBUS_TRANSPORT } from './nest/constants.js';
export { Subscribe, Consume } from './nest/decorators.js';
export type { ConsumeOptions, SubscribeOptions } from './nest/consume-options.js';
export { LogBusContext } from './nest/context.js';
export { LogBusServer } from './nest/server.js';
export { LogBusClient } from './nest/client.js';
export type { ProduceOptions, BatchMessage, ReadOptions, Message } from './nest/client.js';
export { LogBusModule } from './nest/module.js';
export type { ConnectionStatus, ConsumeFrom, ProduceResult, TopicInfo, GroupInfo, BusStats } from './connection/types.js';
export { LogBroker } from './wire/log-broker.js';
export type { LogBrokerOptions } from './wire/log-broker.js';
