/**
 * The error a @Consume method itself threw, kept for the nack and the
 * dead-letter headers (Nest's exception filter turns an unknown error into
 * 'Internal server error' before the server sees it).
 *
 * Keyed by what Nest passed the method (the LogBusContext when it takes
 * `@Ctx()`, the decoded payload object) and written only when the method
 * fails, so a message that succeeds costs nothing here. No
 * AsyncLocalStorage on purpose: on Node 20 it turns on promise hooks for
 * every promise in the process, which halved handler throughput.
 */
const ownErrors = new WeakMap<object, { error: unknown }>();

/** The method threw `error` with these arguments; the first error of a message wins. */
export function recordHandlerError(args: readonly unknown[], error: unknown): void {
  for (const a of args) {
    if (a !== null && typeof a === 'object' && !ownErrors.has(a)) ownErrors.set(a, { error });
  }
}

/** The error a decorated method threw for this message (found by its context or payload), forgotten once read. */
export function takeHandlerError(ctx: object, data: unknown): { error: unknown } | undefined {
  let own = ownErrors.get(ctx);
  ownErrors.delete(ctx);
  if (data !== null && typeof data === 'object') {
    own ??= ownErrors.get(data);
    ownErrors.delete(data);
  }
  return own;
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
