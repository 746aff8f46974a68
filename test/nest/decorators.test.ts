import 'reflect-metadata';
import { describe, expect, it } from '@jest/globals';
import { LogBusError } from '../../lib/errors.js';
import { Consume, Subscribe } from '../../lib/nest/decorators.js';
import { resolveConsumeOptions } from '../../lib/nest/consume-options.js';
import { LogBusContext } from '../../lib/nest/context.js';
import { DEFAULTS } from '../../lib/options.js';

/** Applies a method decorator the way TypeScript does at class definition. */
function decorate(decorator: MethodDecorator): void {
  class Billing {
    bill(): void {}
  }
  const descriptor = Object.getOwnPropertyDescriptor(Billing.prototype, 'bill')!;
  decorator(Billing.prototype, 'bill', descriptor);
}

function errorOf(fn: () => unknown): LogBusError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LogBusError) return e;
    throw new Error(`expected a LogBusError, got ${String(e)}`);
  }
  throw new Error('expected a LogBusError, nothing was thrown');
}

describe('@Subscribe and @Consume validate at class definition', () => {
  it.each(['orders..x', 'orders.>.x', '', 'a b', 'orders/*'])('@Subscribe(%j) fails with INVALID_TOPIC naming the method', pattern => {
    const e = errorOf(() => decorate(Subscribe(pattern)));
    expect(e.code).toBe('INVALID_TOPIC');
    expect(e.message).toContain('Billing.bill');
  });

  it('@Subscribe accepts wildcards and a queue', () => {
    expect(() => decorate(Subscribe('orders.*', { queue: 'mailers' }))).not.toThrow();
    expect(() => decorate(Subscribe('orders.>'))).not.toThrow();
  });

  it('@Subscribe rejects a bad queue name with INVALID_OPTION', () => {
    expect(errorOf(() => decorate(Subscribe('orders', { queue: '' }))).code).toBe('INVALID_OPTION');
    expect(errorOf(() => decorate(Subscribe('orders', { queue: 'a b' }))).code).toBe('INVALID_OPTION');
  });

  it.each(['orders.*', 'orders.>', 'a..b'])('@Consume(%j) needs an exact topic name: INVALID_TOPIC', topic => {
    expect(errorOf(() => decorate(Consume(topic, { group: 'g' }))).code).toBe('INVALID_TOPIC');
  });

  it.each([
    [{ concurrency: 0 }, 'concurrency'],
    [{ concurrency: 1.5 }, 'concurrency'],
    [{ maxDeliver: 0 }, 'maxDeliver'],
    [{ ackWaitMs: -1 }, 'ackWaitMs'],
    [{ ackWaitMs: 0 }, 'ackWaitMs'],
    [{ backoffMs: [] }, 'backoffMs'],
    [{ backoffMs: [100, -5] }, 'backoffMs[1]'],
    [{ from: 'middle' }, 'from'],
    [{ from: { offset: -1 } }, 'from.offset'],
    [{ group: '' }, 'group'],
    [{ group: 'a/b' }, 'group'],
    [{ deadLetter: 'orders' }, 'deadLetter'],
    [{ colour: 'red' }, 'colour'],
  ])('@Consume options %j fail with INVALID_OPTION naming %s', (options, option) => {
    const e = errorOf(() => decorate(Consume('orders', options as never)));
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toContain(`'${option}'`);
    expect(e.message).toContain("@Consume(\"orders\") on Billing.bill");
  });

  it('@Consume deadLetter must be a valid topic name', () => {
    expect(errorOf(() => decorate(Consume('orders', { deadLetter: 'dlq.*' }))).code).toBe('INVALID_TOPIC');
  });
});

describe('@Consume defaults (API.md)', () => {
  it('fills every default and keeps the group open for the server', () => {
    expect(resolveConsumeOptions('orders', undefined)).toEqual({
      topic: 'orders',
      group: undefined,
      from: 'earliest',
      concurrency: 1,
      ackWaitMs: 30_000,
      maxDeliver: 5,
      backoffMs: [1000, 5000, 30_000],
      deadLetter: 'orders.dlq',
    });
    expect(resolveConsumeOptions('orders', {}).backoffMs).toEqual(DEFAULTS.consume.backoffMs);
  });

  it('accepts durations and the other forms of from and deadLetter', () => {
    const spec = resolveConsumeOptions('orders', {
      group: 'billing',
      from: { timestamp: 5 },
      ackWaitMs: '2s',
      backoffMs: ['100ms', 250],
      deadLetter: false,
    });
    expect(spec).toMatchObject({ group: 'billing', from: { timestamp: 5 }, ackWaitMs: 2000, backoffMs: [100, 250], deadLetter: false });
  });
});

describe('LogBusContext', () => {
  it('answers every getter from its arguments', () => {
    const ctx = new LogBusContext(['orders.created', 7, 1_700_000_000_000, 'cust-1', { a: 'b' }, 2, 'billing']);
    expect(ctx.getTopic()).toBe('orders.created');
    expect(ctx.getOffset()).toBe(7);
    expect(ctx.getTimestamp()).toBe(1_700_000_000_000);
    expect(ctx.getKey()).toBe('cust-1');
    expect(ctx.getHeaders()).toEqual({ a: 'b' });
    expect(ctx.getDeliveryCount()).toBe(2);
    expect(ctx.getGroup()).toBe('billing');
  });
});
