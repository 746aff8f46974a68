import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { LogBusError } from '../lib/errors.js';
import { matchPattern, PatternTrie, validatePattern, validateTopicName } from '../lib/topic.js';
import { resolveOptions, topicConfigFor } from '../lib/options.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return e instanceof LogBusError ? e.code : 'not a LogBusError';
  }
  return undefined;
};

describe('topic names', () => {
  it.each(['orders', 'orders.created', 'a-b_c.D9', 'x'.repeat(249)])('accepts %s', name => {
    expect(code(() => validateTopicName(name))).toBeUndefined();
  });
  it.each(['', '.', '..', 'a..b', '.a', 'a.', 'a/b', 'a\u0000b', 'orders.*', 'orders.>', 'ä', 'x'.repeat(250), 'x'.repeat(10_000)])(
    'rejects %j with INVALID_TOPIC',
    name => {
      expect(code(() => validateTopicName(name))).toBe('INVALID_TOPIC');
    },
  );
  it('accepts exactly the dot-separated [A-Za-z0-9_-] segments (against the rule as a regex)', () => {
    const rule = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
    const chars = fc.constantFrom(...'aZ09_-.*> /é'.split(''));
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 12 }).map(a => a.join('')), name => {
        expect(code(() => validateTopicName(name))).toBe(rule.test(name) ? undefined : 'INVALID_TOPIC');
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects non-strings', () => {
    expect(code(() => validateTopicName(42))).toBe('INVALID_TOPIC');
  });
  it('patterns allow * anywhere and > only last', () => {
    expect(code(() => validatePattern('orders.*.eu'))).toBeUndefined();
    expect(code(() => validatePattern('orders.>'))).toBeUndefined();
    expect(code(() => validatePattern('orders.>.x'))).toBe('INVALID_TOPIC');
    expect(code(() => validatePattern('orders.a*'))).toBe('INVALID_TOPIC');
  });
});

describe('wildcards', () => {
  const cases: Array<[string, string, boolean]> = [
    ['orders.*', 'orders.created', true],
    ['orders.*', 'orders', false],
    ['orders.*', 'orders.created.eu', false],
    ['orders.>', 'orders.created', true],
    ['orders.>', 'orders.created.eu', true],
    ['orders.>', 'orders', false],
    ['*.created', 'orders.created', true],
    ['>', 'anything.at.all', true],
    ['orders', 'orders', true],
    ['orders', 'orders2', false],
  ];
  it.each(cases)('%s vs %s → %s', (p, t, want) => {
    expect(matchPattern(p, t)).toBe(want);
  });

  it('the trie agrees with matchPattern, and removal undoes add', () => {
    const patterns = ['orders.*', 'orders.>', '*.created', '>', 'orders.created', 'a.b.c', '*.*.c', 'a.>'];
    const topics = ['orders.created', 'orders', 'a.b.c', 'x.y.c', 'a.b', 'orders.created.eu'];
    const trie = new PatternTrie<string>();
    patterns.forEach(p => trie.add(p, p));
    for (const t of topics) {
      const got: string[] = [];
      trie.match(t, v => got.push(v));
      expect(got.sort()).toEqual(patterns.filter(p => matchPattern(p, t)).sort());
    }
    patterns.forEach(p => expect(trie.remove(p, p)).toBe(true));
    expect(trie.size).toBe(0);
    const none: string[] = [];
    trie.match('orders.created', v => none.push(v));
    expect(none).toEqual([]);
  });
});

describe('options', () => {
  it('topic config: exact key wins, then the most specific wildcard', () => {
    const topics = { 'orders.>': { segmentBytes: 8192 }, 'orders.*': { segmentBytes: 16384 }, 'orders.eu': { durable: false } };
    expect(topicConfigFor('orders.eu', topics).durable).toBe(false);
    expect(topicConfigFor('orders.us', topics).segmentBytes).toBe(16384);
    expect(topicConfigFor('orders.us.x', topics).segmentBytes).toBe(8192);
    expect(topicConfigFor('other', topics).segmentBytes).toBe(64 * 1024 * 1024);
  });
  it.each([
    [{ fsync: 'sometimes' }, 'fsync'],
    [{ topics: { a: { segmentBytes: -1 } } }, "topics['a'].segmentBytes"],
    [{ topics: { a: { retention: { maxAgeMs: '7 weeks' } } } }, "topics['a'].retention.maxAgeMs"],
    [{ rpcTimeoutMs: -5 }, 'rpcTimeoutMs'],
    [{ subscriberBufferBytes: 0 }, 'subscriberBufferBytes'],
    [{ url: 'http://x' }, 'url'],
    [{ listen: { port: 70000 } }, 'listen.port'],
  ])('rejects %j naming %s', (opts, name) => {
    expect(() => resolveOptions(opts as never)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining(`'${name}'`) }));
  });
  it('parses durations', () => {
    const o = resolveOptions({ rpcTimeoutMs: '2s', topics: { a: { retention: { maxAgeMs: '7d' } } } });
    expect(o.rpcTimeoutMs).toBe(2000);
    expect(topicConfigFor('a', o.topics).retention.maxAgeMs).toBe(7 * 86400_000);
  });
});
