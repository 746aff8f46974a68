import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../lib/store/file-store.js';

const dir = mkdtempSync(join(tmpdir(), 'logbus-readwindow-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const quiet = { warn: () => {}, error: () => {} };

describe('reading from disk across more than one read window', () => {
  it('returns every value with its own bytes (values are views: a window buffer must not be reused)', async () => {
    // Regression: readDisk read the next window into the same buffer the records of the
    // previous window were views into, so a read spanning two windows served wrong bytes
    // (found by the power-loss rounds with large records).
    const cfg = { segmentBytes: 64 << 20, maxMessageBytes: 1 << 20, retention: { maxAgeMs: 1e12, maxBytes: 1e12 } };
    const value = (i: number) => Buffer.alloc(i < 200 ? 50 : 30_000, i % 251);
    let store = await FileStore.open({ dataDir: dir, fsync: 'never', logger: quiet, cacheBytes: 0 });
    let log = await store.openTopic('w', cfg);
    // Many small records then large ones: the segment's average size underestimates the tail.
    for (let i = 0; i < 240; i++) log.append([{ key: undefined, headers: undefined, value: value(i) }], 1000 + i);
    await log.flush();
    await store.close();
    store = await FileStore.open({ dataDir: dir, fsync: 'never', logger: quiet, cacheBytes: 0 });
    log = await store.openTopic('w', cfg);
    for (const from of [0, 150, 199, 200]) {
      const got = await log.read(from, 1000);
      expect(got.map(r => r.offset)).toEqual(Array.from({ length: 240 - from }, (_, k) => from + k));
      const wrong = got.filter(r => !r.value.equals(value(r.offset))).map(r => r.offset);
      expect([from, wrong]).toEqual([from, []]);
    }
    await store.close();
  });
});
