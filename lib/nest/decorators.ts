import 'reflect-metadata';
import { EventPattern } from '@nestjs/microservices';
import { isObservable, catchError, throwError } from 'rxjs';
import { validatePattern } from '../topic.js';
import { LOGBUS_EXTRAS } from './constants.js';
import { resolveConsumeOptions, validateName, withPlace, type ConsumeOptions, type SubscribeOptions } from './consume-options.js';
import { recordHandlerError } from './handler-scope.js';

/** What the decorators put under Nest's pattern extras (`extras.logbus`). */
export type LogBusHandlerExtras =
  | { kind: 'subscribe'; queue?: string; handler: string }
  | { kind: 'consume'; options: ConsumeOptions; handler: string };

function place(decorator: string, arg: unknown, target: object, key: string | symbol): string {
  const cls = (target as { constructor?: { name?: string } }).constructor?.name ?? 'handler';
  return `@${decorator}(${JSON.stringify(arg)}) on ${cls}.${String(key)}`;
}

/**
 * Push: every live subscriber gets every message published after it
 * subscribed; with `queue`, one member of the queue group per message.
 * Same as `@EventPattern(pattern)` without a queue.
 */
export function Subscribe(pattern: string, options: SubscribeOptions = {}): MethodDecorator {
  return ((target: object, key: string | symbol, descriptor: PropertyDescriptor) => {
    const handler = place('Subscribe', pattern, target, key);
    withPlace(handler, () => {
      validatePattern(pattern);
      if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
      if (options.queue !== undefined) validateName(options.queue, 'queue');
    });
    const extras: LogBusHandlerExtras = { kind: 'subscribe', handler, ...(options.queue !== undefined && { queue: options.queue }) };
    return EventPattern(pattern, { [LOGBUS_EXTRAS]: extras })(target, key, descriptor);
  }) as MethodDecorator;
}

/**
 * Pull: at-least-once from a durable topic's log as a consumer group. The
 * handler returning (or its Promise/Observable completing) acks; throwing
 * retries after the backoff, then dead-letters.
 */
export function Consume(topic: string, options: ConsumeOptions = {}): MethodDecorator {
  return ((target: object, key: string | symbol, descriptor: PropertyDescriptor) => {
    const handler = place('Consume', topic, target, key);
    withPlace(handler, () => resolveConsumeOptions(topic, options));
    const extras: LogBusHandlerExtras = { kind: 'consume', handler, options: { ...options } };
    keepOwnErrors(descriptor);
    return EventPattern(topic, { [LOGBUS_EXTRAS]: extras })(target, key, descriptor);
  }) as MethodDecorator;
}

/**
 * Wraps the method so the error it throws reaches the dead-letter headers
 * as the user wrote it. Nest reads handler metadata (guards, pipes, …) from
 * the function object, so the metadata set by decorators applied before this
 * one moves to the wrapper.
 */
function keepOwnErrors(descriptor: PropertyDescriptor): void {
  const original = descriptor.value as ((...args: unknown[]) => unknown) | undefined;
  if (typeof original !== 'function') return;
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    let result: unknown;
    try {
      result = original.apply(this, args);
    } catch (e) {
      recordHandlerError(args, e);
      throw e;
    }
    if (result instanceof Promise) {
      return result.catch((e: unknown) => {
        recordHandlerError(args, e);
        throw e;
      });
    }
    if (isObservable(result)) {
      return result.pipe(
        catchError((e: unknown) => {
          recordHandlerError(args, e);
          return throwError(() => e);
        }),
      );
    }
    return result;
  };
  Object.defineProperty(wrapped, 'name', { value: original.name });
  for (const k of Reflect.getOwnMetadataKeys(original)) Reflect.defineMetadata(k, Reflect.getOwnMetadata(k, original), wrapped);
  descriptor.value = wrapped;
}
