/**
 * Every error that reaches a user is a LogBusError with a stable string code.
 * `retriable` tells callers whether trying again can help (kafkajs style).
 */
export type LogBusErrorCode =
  | 'INVALID_TOPIC'
  | 'MESSAGE_TOO_LARGE'
  | 'NO_RESPONDERS'
  | 'TIMEOUT'
  | 'UNAUTHORIZED'
  | 'NOT_DURABLE'
  | 'CLOSED'
  | 'LOCKED'
  | 'CONNECTION_LOST'
  | 'STORAGE'
  // Not in API.md's list: bad options and bad arguments need a code of their own.
  | 'INVALID_OPTION'
  | 'INVALID_ARGUMENT'
  | 'CORRUPT'
  | 'PROTOCOL';

const RETRIABLE: ReadonlySet<LogBusErrorCode> = new Set(['NO_RESPONDERS', 'TIMEOUT', 'CONNECTION_LOST', 'LOCKED']);

export class LogBusError extends Error {
  override readonly name = 'LogBusError';
  readonly code: LogBusErrorCode;
  readonly retriable: boolean;

  constructor(code: LogBusErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
    this.retriable = RETRIABLE.has(code);
  }

  /** Plain form for the wire and for Nest's RpcException. */
  toJSON(): { name: string; code: LogBusErrorCode; message: string } {
    return { name: this.name, code: this.code, message: this.message };
  }
}

export function isLogBusError(e: unknown, code?: LogBusErrorCode): e is LogBusError {
  return e instanceof LogBusError && (code === undefined || e.code === code);
}

/** Wrap an I/O error (ENOSPC, EIO, …) as STORAGE, keeping the cause. */
export function storageError(what: string, cause: unknown): LogBusError {
  if (cause instanceof LogBusError) return cause;
  const errno = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new LogBusError('STORAGE', `${what} failed${errno ? ` (${errno})` : ''}: ${(cause as Error)?.message ?? cause}`, { cause });
}
