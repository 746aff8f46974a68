import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { appendFileSync, cpSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FileStore } from '../../lib/store/file-store.js';
import type { LogRecord, TopicLog } from '../../lib/store/types.js';
import { FaultyIO } from './faulty-io.js';
import { openFile, recordingLogger, removeDir, tempDir, topicConfig } from './helpers.js';

const cfg = topicConfig({ segmentBytes: 4096 });
const valueFor = (i: number) => Buffer.from(`value-${i}-`.padEnd(40 + (i % 60), String.fromCharCode(97 + (i % 26))));
const topicDir = (dir: string) => join(dir, 'topics', 't');
const files = (dir: string, ext: string) =>
  readdirSync(topicDir(dir))
    .filter(f => f.endsWith(ext))
    .sort()
    .map(f => join(topicDir(dir), f));

async function fill(store: FileStore, n: number, from = 0): Promise<TopicLog> {
  const log = await store.openTopic('t', cfg);
  for (let i = from; i < from + n; i++) log.append([{ key: `k${i}`, headers: { i: String(i) }, value: valueFor(i) }], 1000 + i);
  await log.flush();
  return log;
}

function expectExact(records: LogRecord[], count: number): void {
  expect(records.map(r => r.offset)).toEqual(Array.from({ length: count }, (_, i) => i));
  records.forEach((r, i) => {
    expect(r.value.equals(valueFor(i))).toBe(true);
    expect(r.key).toBe(`k${i}`);
    expect(r.headers).toEqual({ i: String(i) });
  });
}

describe('recovery', () => {
  let dir: string;
  let store: FileStore | undefined;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    removeDir(dir);
  });

  it('cuts random garbage (1–1024 bytes) appended to the active segment, keeping every good record', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 1024 }), fc.integer({ min: 1, max: 120 }), async (garbage, n) => {
        const d = tempDir();
        try {
          let s = await openFile(d);
          await fill(s, n);
          await s.close();
          const active = files(d, '.log').at(-1)!;
          const goodSize = statSync(active).size;
          appendFileSync(active, garbage);
          const logger = recordingLogger();
          s = await openFile(d, { logger });
          const log = await s.openTopic('t', cfg);
          expect(log.nextOffset).toBe(n);
          expectExact(await log.read(0, 1000), n);
          expect(statSync(active).size).toBe(goodSize);
          // All-zero bytes look like preallocated space, which recovery cuts silently;
          // anything else is a torn tail and is reported.
          const tornTail = garbage.some(b => b !== 0);
          expect(logger.warnings.some(w => w.includes('torn tail'))).toBe(tornTail);
          // Appends continue right after the last good record.
          const r = log.append([{ key: `k${n}`, headers: { i: String(n) }, value: valueFor(n) }], 1);
          expect(r.baseOffset).toBe(n);
          await s.close();
        } finally {
          removeDir(d);
        }
      }),
      // always run both branches: zeros alone (silent cut) and zeros then a byte (torn tail)
      { numRuns: 25, examples: [[new Uint8Array(300), 7], [Uint8Array.from([0, 0, 7]), 7]] },
    );
  });

  it('ignores garbage appended to index files and rebuilds what it needs', async () => {
    store = await openFile(dir);
    await fill(store, 200);
    await store.close();
    for (const idx of files(dir, '.index')) appendFileSync(idx, randomBytes(1 + Math.floor(Math.random() * 1024)));
    store = await openFile(dir);
    const log = await store.openTopic('t', cfg);
    expect(log.nextOffset).toBe(200);
    expectExact(await log.read(0, 1000), 200);
    for (let off = 0; off < 200; off += 17) expect(await log.offsetForTimestamp(1000 + off)).toBe(off);
  });

  it('rebuilds deleted index files from the segments', async () => {
    store = await openFile(dir);
    await fill(store, 200);
    await store.close();
    const indexes = files(dir, '.index');
    expect(indexes.length).toBeGreaterThan(3);
    for (const idx of indexes) unlinkSync(idx);
    store = await openFile(dir);
    const log = await store.openTopic('t', cfg);
    expect(log.nextOffset).toBe(200);
    expectExact(await log.read(0, 1000), 200);
    expect(files(dir, '.index').length).toBe(indexes.length);
    expect(await log.offsetForTimestamp(1150)).toBe(150);
  });

  it('opens a cleanly closed log without scanning its segments', async () => {
    store = await openFile(dir);
    await fill(store, 2000);
    await store.close();
    const logBytes = files(dir, '.log').reduce((n, f) => n + statSync(f).size, 0);
    const io = new FaultyIO();
    store = await openFile(dir, { io });
    const log = await store.openTopic('t', cfg);
    expect(log.nextOffset).toBe(2000);
    // Index tails and the active segment's index only: a small fraction of the log.
    expect(io.bytesRead).toBeLessThan(logBytes / 20);
  });

  it('after a crash, open reads the unindexed tail of the active segment, not the log', async () => {
    // A snapshot of a live store's files is what a kill -9 leaves behind.
    const big = topicConfig({ segmentBytes: 1 << 20 });
    store = await openFile(dir);
    const log = await store.openTopic('t', big);
    const value = Buffer.alloc(200, 7);
    // Nine sealed 1 MiB segments and an active one of ~0.9 MiB.
    for (let i = 0; log.sizeBytes < 9.9 * (1 << 20); i++) log.append([{ key: `k${i}`, headers: undefined, value }], 5000 + i);
    const total = log.nextOffset;
    await log.flush();
    const crashed = `${dir}-crashed`;
    cpSync(dir, crashed, { recursive: true });
    unlinkSync(join(crashed, 'LOCK'));
    try {
      const active = files(crashed, '.log').at(-1)!;
      expect(statSync(active).size).toBeGreaterThan(800 * 1024);
      const io = new FaultyIO();
      const again = await openFile(crashed, { io });
      const reopened = await again.openTopic('t', big);
      expect(reopened.nextOffset).toBe(total);
      // Less than half of the active segment, and nothing of the sealed ones but their index tails.
      expect(io.bytesRead).toBeLessThan(400 * 1024);
      const last = await reopened.read(total - 10, 100);
      expect(last.map(r => r.key)).toEqual(Array.from({ length: 10 }, (_, i) => `k${total - 10 + i}`));
      expect(await reopened.offsetForTimestamp(5000 + 20_000)).toBe(20_000);
      await again.close();
    } finally {
      removeDir(crashed);
    }
  });

  it('reports a flipped byte inside a sealed segment as CORRUPT and never serves it', async () => {
    store = await openFile(dir);
    await fill(store, 200);
    await store.close();
    const sealed = files(dir, '.log')[1];
    const base = Number(sealed.slice(-24, -4));
    const bytes = readFileSync(sealed);
    const at = Math.floor(bytes.length / 2);
    bytes[at] ^= 0x40;
    writeFileSync(sealed, bytes);
    const logger = recordingLogger();
    store = await openFile(dir, { logger });
    const log = await store.openTopic('t', cfg);
    expect(log.nextOffset).toBe(200);
    // Everything before the segment is served.
    expectExact(await log.read(0, base), base);
    // Reading through the damage: the good records before it, then CORRUPT naming file and position.
    const served: LogRecord[] = [];
    let err: unknown;
    for (let from = base; from < 200; ) {
      try {
        const got = await log.read(from, 1000);
        served.push(...got);
        from = got.at(-1)!.offset + 1;
      } catch (e) {
        err = e;
        break;
      }
    }
    expect(err).toMatchObject({ code: 'CORRUPT' });
    expect((err as Error).message).toContain(sealed);
    expect((err as Error).message).toMatch(/at byte \d+/);
    for (const r of served) expect(r.value.equals(valueFor(r.offset))).toBe(true);
    expect(served.length).toBeLessThan(200 - base);
    // Later segments stay readable.
    const next = Number(files(dir, '.log')[2].slice(-24, -4));
    const later = await log.read(next, 1000);
    expect(later[0].offset).toBe(next);
    for (const r of later) expect(r.value.equals(valueFor(r.offset))).toBe(true);
    // Nothing was cut from the damaged segment.
    expect(statSync(sealed).size).toBe(bytes.length);
  });

  it('reports a sealed segment whose index is gone and whose data is damaged at open', async () => {
    store = await openFile(dir);
    await fill(store, 200);
    await store.close();
    const sealed = files(dir, '.log')[1];
    unlinkSync(sealed.replace(/\.log$/, '.index'));
    const bytes = readFileSync(sealed);
    bytes[bytes.length - 10] ^= 0xff;
    writeFileSync(sealed, bytes);
    const logger = recordingLogger();
    store = await openFile(dir, { logger });
    const log = await store.openTopic('t', cfg);
    expect(logger.errors.some(e => e.includes(sealed) && e.includes('damaged'))).toBe(true);
    expect(statSync(sealed).size).toBe(bytes.length);
    const base = Number(sealed.slice(-24, -4));
    const next = Number(files(dir, '.log')[2].slice(-24, -4));
    await expect(log.read(next - 1, 1)).rejects.toMatchObject({ code: 'CORRUPT' });
    expect((await log.read(next, 1))[0].offset).toBe(next);
    expect((await log.read(base, 1))[0].value.equals(valueFor(base))).toBe(true);
  });
});
