import { afterAll, describe, expect, it } from '@jest/globals';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker/broker.js';
import type { Delivery } from '../../lib/connection/types.js';
import { MemoryLogger, spec, until } from '../broker/helpers.js';
import { prng } from './sim-disk.js';

/**
 * Damage on disk seen through the broker. Behaviour (decided by the store's
 * damage policy, file-topic-log.ts): garbage after the last batch of a
 * segment or index is cut/rebuilt with a warning; a bit flip inside a sealed
 * segment is never served and never cut: read() rejects with CORRUPT naming
 * the file and the offset to skip to, and a consumer group stops just before
 * the damage (it logs the error and retries every second) until an operator
 * resets it past the damage with resetGroup().
 */

const root = mkdtempSync(join(tmpdir(), 'logbus-corrupt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const topics = { c: { segmentBytes: 4096 } };
const value = (i: number) => Buffer.from(`message ${i} ${'.'.repeat(150 + (i % 7))}`);

async function open(dataDir: string) {
  const logger = new MemoryLogger();
  const broker = await Broker.open({ dataDir, fsync: 'never', retentionCheckMs: 0, logger, topics });
  return { broker, c: broker.connect(), logger };
}

/** A data dir holding 80 messages on 'c' in several segments; returns it and the segment paths. */
async function filled(): Promise<{ dataDir: string; segments: string[]; indexes: string[] }> {
  const dataDir = join(root, String(n++));
  const { broker, c } = await open(dataDir);
  for (let i = 0; i < 80; i += 10) await c.produce('c', Array.from({ length: 10 }, (_, k) => ({ value: value(i + k), key: `k${(i + k) % 3}` })));
  await broker.close();
  const dir = join(dataDir, 'topics', 'c');
  const files = readdirSync(dir).sort();
  return { dataDir, segments: files.filter(f => f.endsWith('.log')).map(f => join(dir, f)), indexes: files.filter(f => f.endsWith('.index')).map(f => join(dir, f)) };
}

/** A member of group 'g' on 'c' that acks everything; deliveries start only after consume() has returned. */
async function consumeAll(c: ReturnType<Broker['connect']>, got: Delivery[]): Promise<void> {
  const k = await c.consume(spec('c', 'g', { concurrency: 3 }), d => {
    got.push(d);
    k.ack(d);
  });
}

describe('corruption seen through the broker', () => {
  it('random bytes appended to segments and indexes: cut or rebuilt with a warning, every message served exactly', async () => {
    const { dataDir, segments, indexes } = await filled();
    expect(segments.length).toBeGreaterThanOrEqual(3);
    const rng = prng(11);
    const junk = (len: number) => Buffer.from(Array.from({ length: len }, () => Math.floor(rng() * 256)));
    appendFileSync(segments[0], junk(37)); // sealed
    appendFileSync(segments[segments.length - 1], junk(300)); // active: a torn tail
    for (const ix of indexes) appendFileSync(ix, junk(5 + Math.floor(rng() * 40)));
    const { broker, c, logger } = await open(dataDir);
    const got: Delivery[] = [];
    await consumeAll(c, got);
    await until(() => got.length === 80, 'all 80 messages');
    expect(got.map(d => d.offset).sort((a, b) => a! - b!)).toEqual(Array.from({ length: 80 }, (_, i) => i));
    for (const d of got) expect(d.value.equals(value(d.offset!))).toBe(true);
    expect(logger.warnings.join('\n')).toMatch(/garbage|torn tail/);
    expect(logger.errors).toEqual([]);
    await broker.close();
  });

  it('a bit flip inside a sealed segment: never served; the group stops before it, reports CORRUPT, and resumes past it after resetGroup', async () => {
    const { dataDir, segments } = await filled();
    const victim = segments[1];
    const bytes = readFileSync(victim);
    const at = Math.floor(bytes.length / 2);
    bytes[at] ^= 0x10;
    writeFileSync(victim, bytes);
    const { broker, c, logger } = await open(dataDir);
    const got: Delivery[] = [];
    await consumeAll(c, got);
    await until(() => logger.errors.some(e => e.includes('damaged')), 'the group to report the damage');
    const report = logger.errors.find(e => e.includes('damaged'))!;
    expect(report).toContain(victim);
    const skipTo = Number(/Read from offset (\d+)/.exec(report)![1]);
    const secondBase = Number(victim.slice(-24, -4));
    // What was read before the damage is delivered once the group's delivered-up-to mark is written.
    await until(() => got.length >= secondBase, 'the messages before the damaged segment');
    expect(skipTo).toBeGreaterThan(secondBase);
    // Everything delivered so far is exact, contiguous from 0, and stops inside the damaged segment.
    const offsets = got.map(d => d.offset!).sort((a, b) => a - b);
    expect(offsets).toEqual(Array.from({ length: offsets.length }, (_, i) => i));
    expect(offsets.length).toBeGreaterThanOrEqual(secondBase);
    expect(offsets.length).toBeLessThan(skipTo);
    for (const d of got) expect(d.value.equals(value(d.offset!))).toBe(true);
    // read() says the same.
    await expect(c.read('c', offsets.length, 10)).rejects.toMatchObject({ code: 'CORRUPT' });
    // The operator skips the damaged segment: the group resumes there, everything after is served exactly.
    await c.resetGroup('c', 'g', { offset: skipTo });
    await until(() => got.some(d => d.offset === 79), 'the rest');
    const after = got.filter(d => d.offset! >= skipTo).map(d => d.offset!);
    expect(new Set(after).size).toBe(80 - skipTo);
    for (const d of got) expect(d.value.equals(value(d.offset!))).toBe(true);
    expect(got.some(d => d.offset! >= offsets.length && d.offset! < skipTo)).toBe(false);
    await broker.close();
  });

  for (const damage of ['truncated', 'zeroed'] as const) {
    it(`the newest group checkpoint ${damage}: the previous copy is used with a warning; no acked-beyond message is skipped`, async () => {
      const dataDir = join(root, String(n++));
      let { broker, c } = await open(dataDir);
      await c.produce('c', Array.from({ length: 40 }, (_, i) => ({ value: value(i) })));
      const first: Delivery[] = [];
      await consumeAll(c, first);
      await until(() => first.length === 40, 'first pass');
      await broker.close();
      const ckpts = readdirSync(dataDir).filter(f => /^group-offsets-[01]\.ckpt$/.test(f)).map(f => join(dataDir, f));
      // The newest copy has the higher sequence number (f64 at byte 4).
      const newest = ckpts.sort((a, b) => readFileSync(b).readDoubleLE(4) - readFileSync(a).readDoubleLE(4))[0];
      const size = statSync(newest).size;
      writeFileSync(newest, damage === 'zeroed' ? Buffer.alloc(size) : readFileSync(newest).subarray(0, size >> 1));
      let logger: MemoryLogger;
      ({ broker, c, logger } = await open(dataDir));
      expect(logger.warnings.join('\n')).toMatch(/corrupt/);
      await c.produce('c', [{ value: value(40) }]);
      const second: Delivery[] = [];
      await consumeAll(c, second);
      await until(() => second.some(d => d.offset === 40), 'second pass');
      // Older position: some messages come again (at-least-once), never a gap.
      const offsets = second.map(d => d.offset!).sort((a, b) => a - b);
      expect(offsets).toEqual(Array.from({ length: offsets.length }, (_, i) => 41 - offsets.length + i));
      await broker.close();
    });
  }
});
