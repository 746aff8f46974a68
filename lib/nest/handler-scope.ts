/**
 * One message being handled, tracked by the server until it is settled.
 *
 * No AsyncLocalStorage here on purpose: on Node 20 it turns on promise hooks
 * for every promise in the process, which halved handler throughput.
 */
export interface HandlerRun {
  /** the first error the decorated method itself threw */
  error?: unknown;
  failed: boolean;
}

/**
 * The run of each message, found from what Nest passes to the method: the
 * LogBusContext (when the method takes `@Ctx()`) or the decoded payload object.
 * Lets @Consume keep the handler's own error for the nack and the
 * dead-letter headers, before Nest's exception filter turns an unknown
 * error into 'Internal server error'.
 */
const runs = new WeakMap<object, HandlerRun>();
/** on our own LogBusContext a plain (hidden) property is much cheaper than a WeakMap entry */
const RUN = Symbol('logbus.run');

export function bindRun(key: unknown, run: HandlerRun, own = false): void {
  if (own) (key as { [RUN]?: HandlerRun })[RUN] = run;
  else if (key !== null && typeof key === 'object') runs.set(key, run);
}

export function recordHandlerError(args: readonly unknown[], error: unknown): void {
  for (const a of args) {
    const run = a !== null && typeof a === 'object' ? ((a as { [RUN]?: HandlerRun })[RUN] ?? runs.get(a)) : undefined;
    if (!run) continue;
    if (!run.failed) {
      run.failed = true;
      run.error = error;
    }
    return;
  }
}

/** Names of the server methods every handler call runs under (see isInsideHandler). */
const HANDLER_FRAMES = /\.(handlePull|handlePush|runRpcHandler) /;

/**
 * Whether the caller runs inside a logbus handler: V8's async stack traces
 * keep the awaiting server method in `new Error().stack`. Only close() asks,
 * so the cost of a stack trace does not matter.
 */
export function isInsideHandler(): boolean {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 200;
  try {
    return HANDLER_FRAMES.test(new Error().stack ?? '');
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** A short, single-line description of whatever a handler threw or errored with. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'string') return error;
  if (error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}
