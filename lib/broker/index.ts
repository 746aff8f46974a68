// The broker core as the other layers use it (wire server, LogBroker, connection drivers).
export { Broker, BrokerSession, MAX_READ, type BrokerOptions } from './broker.js';
export { acquireBroker, releaseBroker, brokerKey, openBrokerCount } from './registry.js';
export { consoleLogger, type BrokerLogger } from './logger.js';
export { MAX_SPAN } from './consumer-group.js';
export { MAX_PENDING_PER_SESSION, MAX_RESPONDERS } from './rpc-router.js';
export { MAX_TOPICS } from './topics.js';
