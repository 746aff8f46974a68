import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openFile, recordingLogger, removeDir, tempDir } from './helpers.js';

const slots = (dir: string, name: string) =>
  readdirSync(dir)
    .filter(f => f.startsWith(name) && f.endsWith('.ckpt'))
    .map(f => join(dir, f));

describe('group offsets and topic configs', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => removeDir(dir));

  it('survive reopen; later commits overwrite earlier ones; coalesced commits all resolve', async () => {
    let store = await openFile(dir);
    await store.commitGroupOffsets([{ topic: 'a', group: 'g1', offset: 5 }]);
    const many = Array.from({ length: 20 }, (_, i) => store.commitGroupOffsets([{ topic: 'a', group: 'g2', offset: i }]));
    await Promise.all(many);
    await store.commitGroupOffsets([{ topic: 'a', group: 'g1', offset: 7 }, { topic: 'b.c', group: 'g1', offset: 1 }]);
    await store.saveTopicConfig('a', { retention: { maxAgeMs: '1d' }, segmentBytes: 8192 });
    await store.deleteGroupOffset('b.c', 'g1');
    await store.close();
    const logger = recordingLogger();
    store = await openFile(dir, { logger });
    const offsets = (await store.loadGroupOffsets()).sort((x, y) => x.group.localeCompare(y.group));
    expect(offsets).toEqual([
      { topic: 'a', group: 'g1', offset: 7 },
      { topic: 'a', group: 'g2', offset: 19 },
    ]);
    expect(await store.loadTopicConfigs()).toEqual({ a: { retention: { maxAgeMs: '1d' }, segmentBytes: 8192 } });
    expect(logger.warnings).toEqual([]);
    await store.close();
  });

  it('detects a corrupted checkpoint, warns, and falls back to the previous good copy', async () => {
    let store = await openFile(dir);
    await store.commitGroupOffsets([{ topic: 'a', group: 'g', offset: 10 }]);
    await store.commitGroupOffsets([{ topic: 'a', group: 'g', offset: 20 }]);
    await store.close();
    // Corrupt the newest copy (the one holding 20).
    const newest = slots(dir, 'group-offsets').find(f => readFileSync(f).includes('20'))!;
    const bytes = readFileSync(newest);
    bytes[bytes.length - 3] ^= 0x01;
    writeFileSync(newest, bytes);
    const logger = recordingLogger();
    store = await openFile(dir, { logger });
    expect(await store.loadGroupOffsets()).toEqual([{ topic: 'a', group: 'g', offset: 10 }]);
    expect(logger.warnings.some(w => w.includes(newest) && w.includes('corrupt'))).toBe(true);
    // The next commit replaces the corrupt copy, not the good one.
    await store.commitGroupOffsets([{ topic: 'a', group: 'g', offset: 30 }]);
    await store.close();
    const quiet = recordingLogger();
    store = await openFile(dir, { logger: quiet });
    expect(await store.loadGroupOffsets()).toEqual([{ topic: 'a', group: 'g', offset: 30 }]);
    expect(quiet.warnings).toEqual([]);
    await store.close();
  });

  it('warns (never silently resets) when every checkpoint copy is missing', async () => {
    let store = await openFile(dir);
    await store.commitGroupOffsets([{ topic: 'a', group: 'g', offset: 3 }]);
    await store.close();
    for (const f of slots(dir, 'group-offsets')) unlinkSync(f);
    const logger = recordingLogger();
    store = await openFile(dir, { logger });
    expect(await store.loadGroupOffsets()).toEqual([]);
    expect(logger.warnings.some(w => w.includes('group-offsets') && w.includes('missing'))).toBe(true);
    await store.close();
  });

  it('rejects bad entries with INVALID_ARGUMENT and saves nothing of them', async () => {
    const store = await openFile(dir);
    await expect(store.commitGroupOffsets([{ topic: 'a', group: 'g', offset: -1 }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.commitGroupOffsets([{ topic: 'a/b', group: 'g', offset: 1 }])).rejects.toMatchObject({ code: 'INVALID_TOPIC' });
    await expect(store.commitGroupOffsets([{ topic: 'a', group: '', offset: 1 }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await store.loadGroupOffsets()).toEqual([]);
    await store.close();
  });
});
