/** The transport id Nest uses to route `@EventPattern(p, LOGBUS_TRANSPORT)` handlers to LogBusServer. */
export const LOGBUS_TRANSPORT: unique symbol = Symbol('LOGBUS_TRANSPORT');

/** Key under Nest's pattern `extras` where the logbus decorators keep their options. */
export const LOGBUS_EXTRAS = 'logbus';
