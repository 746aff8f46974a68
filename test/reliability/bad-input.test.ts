import { afterAll, afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker/broker.js';
import type { InProcessConnection } from '../../lib/connection/in-process.js';
import type { ConsumeSpec } from '../../lib/connection/types.js';
import { LogBusError } from '../../lib/errors.js';
import { resolveOptions } from '../../lib/options.js';
import { MemoryLogger } from '../broker/helpers.js';

/**
 * Bad input at the broker's entry points (Broker.open, resolveOptions,
 * produce, createTopic, consume, subscribe, read): each is a LogBusError
 * whose code names the kind of problem, and nothing reaches the disk — no
 * topic in topics(), no directory under <dataDir>/topics.
 */

const root = mkdtempSync(join(tmpdir(), 'logbus-badinput-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, String(n++));

async function errorOf(f: () => unknown): Promise<LogBusError> {
  try {
    await f();
  } catch (e) {
    expect(e).toBeInstanceOf(LogBusError);
    return e as LogBusError;
  }
  throw new Error('expected a LogBusError, got success');
}

const BAD_TOPICS: unknown[] = ['..', '.', '/', 'a/b', '../etc', 'a\0b', 'x'.repeat(10 * 1024), '', 'a..b', '.a', 'a.', '\\', 'a b', 'a*', 'a>', 5, null, undefined, {}, ['a']];

describe('Broker.open options', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['unknown fsync mode', { fsync: 'sometimes' }, 'fsync'],
    ['negative subscriberBufferBytes', { subscriberBufferBytes: -1 }, 'subscriberBufferBytes'],
    ['zero subscriberBufferBytes', { subscriberBufferBytes: 0 }, 'subscriberBufferBytes'],
    ['negative retentionCheckMs', { retentionCheckMs: -5 }, 'retentionCheckMs'],
    ['unparsable retentionCheckMs', { retentionCheckMs: 'soon' }, 'retentionCheckMs'],
    ["topic key '..'", { topics: { '..': {} } }, "topics['..']"],
    ['negative segmentBytes', { topics: { a: { segmentBytes: -1 } } }, 'segmentBytes'],
    ['zero maxMessageBytes', { topics: { a: { maxMessageBytes: 0 } } }, 'maxMessageBytes'],
    ['negative retention age', { topics: { a: { retention: { maxAgeMs: -1 } } } }, 'maxAgeMs'],
    ['negative retention bytes', { topics: { 'a.*': { retention: { maxBytes: -10 } } } }, 'maxBytes'],
    ['empty dataDir', { dataDir: '' }, 'dataDir'],
    ['numeric dataDir', { dataDir: 5 }, 'dataDir'],
  ];
  for (const [what, over, option] of cases) {
    it(`${what}: INVALID_OPTION naming '${option}', nothing created`, async () => {
      const dataDir = freshDir();
      const e = await errorOf(() => Broker.open({ dataDir, logger: new MemoryLogger(), ...over } as never));
      expect(e.code).toBe('INVALID_OPTION');
      expect(e.message).toContain(option);
      // Refused before the store opened: not even the data directory exists.
      expect(existsSync(dataDir)).toBe(false);
      // resolveOptions (the Nest entry point) refuses the same input the same way.
      if (!('dataDir' in over)) expect(() => resolveOptions(over as never)).toThrow(e.message.replace(/^INVALID_OPTION: /, ''));
    });
  }

  it('null options: INVALID_OPTION', async () => {
    expect((await errorOf(() => Broker.open(null as never))).code).toBe('INVALID_OPTION');
  });
});

describe('entry points of a running broker', () => {
  let dataDir: string;
  let broker: Broker;
  let c: InProcessConnection;
  beforeEach(async () => {
    dataDir = freshDir();
    broker = await Broker.open({ dataDir, fsync: 'never', retentionCheckMs: 0, logger: new MemoryLogger(), topics: { small: { maxMessageBytes: 10 } } });
    c = broker.connect();
  });
  afterEach(async () => {
    // Nothing was stored: no topic known, no topic directory on disk.
    expect(await c.topics()).toEqual([]);
    expect(readdirSync(join(dataDir, 'topics'))).toEqual([]);
    await broker.close();
  });

  it('bad topic names are INVALID_TOPIC at produce, createTopic, read, consume, subscribe, groups', async () => {
    const spec = (topic: unknown): ConsumeSpec =>
      ({ topic, group: 'g', from: 'earliest', concurrency: 1, ackWaitMs: 1000, maxDeliver: 3, backoffMs: [10], deadLetter: false }) as ConsumeSpec;
    for (const t of BAD_TOPICS) {
      const name = JSON.stringify(t)?.slice(0, 30);
      expect([name, (await errorOf(() => c.produce(t as string, [{ value: Buffer.from('x') }]))).code]).toEqual([name, 'INVALID_TOPIC']);
      expect([name, (await errorOf(() => c.createTopic(t as string, {}))).code]).toEqual([name, 'INVALID_TOPIC']);
      expect([name, (await errorOf(() => c.read(t as string, 'earliest', 10))).code]).toEqual([name, 'INVALID_TOPIC']);
      expect([name, (await errorOf(() => c.consume(spec(t), () => {}))).code]).toEqual([name, 'INVALID_TOPIC']);
      expect([name, (await errorOf(() => c.groups(t as string))).code]).toEqual([name, 'INVALID_TOPIC']);
      if (typeof t === 'string' && t !== '' && !t.endsWith('>') && !t.endsWith('*')) {
        expect([name, (await errorOf(() => c.subscribe({ pattern: t }, () => {}))).code]).toEqual([name, 'INVALID_TOPIC']);
      }
    }
  });

  it('bad messages and batches are refused whole, before a new topic is created', async () => {
    const x = Buffer.from('x');
    const cases: [string, () => Promise<unknown>, string][] = [
      ['oversized message on a new topic', () => c.produce('fresh', [{ value: Buffer.alloc(2 << 20) }]), 'MESSAGE_TOO_LARGE'],
      ['oversized per topic config', () => c.produce('small', [{ value: x }, { value: Buffer.alloc(11) }]), 'MESSAGE_TOO_LARGE'],
      ['batch over the message count limit', () => c.produce('fresh', Array.from({ length: 10_001 }, () => ({ value: x }))), 'INVALID_ARGUMENT'],
      ['numeric header', () => c.produce('fresh', [{ value: x, headers: { a: 1 as never } }]), 'INVALID_ARGUMENT'],
      ['array headers', () => c.produce('fresh', [{ value: x, headers: ['a'] as never }]), 'INVALID_ARGUMENT'],
      ['null headers', () => c.produce('fresh', [{ value: x, headers: null as never }]), 'INVALID_ARGUMENT'],
      ['string value', () => c.produce('fresh', [{ value: 'x' as never }]), 'INVALID_ARGUMENT'],
      ['numeric key', () => c.produce('fresh', [{ value: x, key: 5 as never }]), 'INVALID_ARGUMENT'],
      ['key of 40 000 chars', () => c.produce('fresh', [{ value: x, key: 'k'.repeat(40_000) }]), 'INVALID_ARGUMENT'],
      ['70 KB of headers', () => c.produce('fresh', [{ value: x, headers: { h: 'v'.repeat(70_000) } }]), 'MESSAGE_TOO_LARGE'],
      ['messages not an array', () => c.produce('fresh', 'x' as never), 'INVALID_ARGUMENT'],
      ['a good message then a bad one', () => c.produce('fresh', [{ value: x }, null as never]), 'INVALID_ARGUMENT'],
    ];
    for (const [what, f, code] of cases) expect([what, (await errorOf(f)).code]).toEqual([what, code]);
  });

  it('bad createTopic configs, consume specs, subscribe specs and read arguments name the option', async () => {
    const cfg: [unknown, string][] = [
      [{ segmentBytes: 0 }, 'segmentBytes'],
      [{ segmentBytes: -4096 }, 'segmentBytes'],
      [{ maxMessageBytes: 1e12 }, 'maxMessageBytes'],
      [{ durable: 'yes' }, 'durable'],
      [{ retention: { maxAgeMs: -1 } }, 'maxAgeMs'],
      [{ retention: { maxAgeMs: 'forever' } }, 'maxAgeMs'],
    ];
    for (const [config, option] of cfg) {
      const e = await errorOf(() => c.createTopic('t', config as never));
      expect([option, e.code]).toEqual([option, 'INVALID_OPTION']);
      expect(e.message).toContain(option);
    }
    expect((await errorOf(() => c.createTopic('t', null as never))).code).toBe('INVALID_ARGUMENT');

    const base: ConsumeSpec = { topic: 'c1', group: 'g', from: 'earliest', concurrency: 1, ackWaitMs: 1000, maxDeliver: 3, backoffMs: [10], deadLetter: false };
    const specs: [Partial<Record<keyof ConsumeSpec, unknown>>, string][] = [
      [{ concurrency: 0 }, 'concurrency'],
      [{ concurrency: -1 }, 'concurrency'],
      [{ concurrency: 1e9 }, 'concurrency'],
      [{ ackWaitMs: -1 }, 'ackWaitMs'],
      [{ maxDeliver: 0 }, 'maxDeliver'],
      [{ backoffMs: [-1] }, 'backoffMs'],
      [{ backoffMs: 'x' }, 'backoffMs'],
      [{ group: '../x' }, 'group'],
      [{ group: '' }, 'group'],
      [{ from: 'middle' }, 'from'],
      [{ from: { offset: -1 } }, 'from'],
      [{ deadLetter: '..' }, 'deadLetter'],
    ];
    for (const [over, option] of specs) {
      const e = await errorOf(() => c.consume({ ...base, ...over } as ConsumeSpec, () => {}));
      expect([option, e.code]).toEqual([option, 'INVALID_OPTION']);
      expect(e.message).toContain(option);
    }
    expect((await errorOf(() => c.consume(null as never, () => {}))).code).toBe('INVALID_ARGUMENT');
    for (const bufferBytes of [0, -1, 1.5]) expect((await errorOf(() => c.subscribe({ pattern: 'p', bufferBytes }, () => {}))).code).toBe('INVALID_OPTION');
    expect((await errorOf(() => c.subscribe({ pattern: 'p', queue: '' }, () => {}))).code).toBe('INVALID_ARGUMENT');
    for (const [from, max] of [[-1, 10], [1.5, 10], [0, 0], [0, -5]] as [number, number][]) {
      expect((await errorOf(() => c.read('t', from, max))).code).toBe('INVALID_ARGUMENT');
    }
  });
});
