import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Checkpoint } from '../../lib/store/checkpoint.js';
import { nodeIO } from '../../lib/store/io.js';
import { MemoryStore } from '../../lib/store/memory-store.js';
import { MAX_GROUP_DELIVERIES, type GroupOffset, type LogStore } from '../../lib/store/types.js';
import { openFile, recordingLogger, removeDir, tempDir } from './helpers.js';

const withCounts: GroupOffset = { topic: 'a', group: 'g', offset: 5, deliveredUpTo: 1029, deliveries: [[5, 3], [7, 0], [9, 2]] };

const badExtras: unknown[] = [
  { deliveredUpTo: -1 },
  { deliveredUpTo: 1.5 },
  { deliveredUpTo: 10, deliveries: 'x' },
  { deliveredUpTo: 10, deliveries: [[1]] },
  { deliveredUpTo: 10, deliveries: [[1, -2]] },
  { deliveredUpTo: 10, deliveries: [[10, 2]] }, // not below the mark
  { deliveries: [[1, 2]] }, // counts without a mark
  { deliveredUpTo: MAX_GROUP_DELIVERIES * 2, deliveries: Array.from({ length: MAX_GROUP_DELIVERIES + 1 }, (_, i) => [i, 2]) },
];

async function rejectsBadExtras(store: LogStore): Promise<void> {
  await store.commitGroupOffsets([{ topic: 'a', group: 'g', offset: 1 }]);
  for (const extra of badExtras) {
    const entry = { topic: 'a', group: 'g', offset: 2, ...(extra as object) } as GroupOffset;
    await expect(store.commitGroupOffsets([entry])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  }
  expect(await store.loadGroupOffsets()).toEqual([{ topic: 'a', group: 'g', offset: 1 }]);
}

describe('persisted delivery counts in group offsets', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => removeDir(dir));

  it('round-trip through the file checkpoint, and a later commit without them drops them', async () => {
    let store = await openFile(dir);
    await store.commitGroupOffsets([withCounts, { topic: 'a', group: 'plain', offset: 3 }]);
    await store.close();
    const logger = recordingLogger();
    store = await openFile(dir, { logger });
    const byGroup = (xs: GroupOffset[]) => xs.sort((x, y) => x.group.localeCompare(y.group));
    expect(byGroup(await store.loadGroupOffsets())).toEqual([withCounts, { topic: 'a', group: 'plain', offset: 3 }]);
    await store.commitGroupOffsets([{ topic: 'a', group: 'g', offset: 6 }]);
    await store.close();
    store = await openFile(dir, { logger });
    expect(byGroup(await store.loadGroupOffsets())).toEqual([
      { topic: 'a', group: 'g', offset: 6 },
      { topic: 'a', group: 'plain', offset: 3 },
    ]);
    expect(logger.warnings).toEqual([]);
    await store.close();
  });

  it('an old-format checkpoint (offsets only) loads as it is, without warnings', async () => {
    // Written the way stores before delivery counts wrote it.
    const logger = recordingLogger();
    const first = await openFile(dir, { logger });
    await first.close();
    await new Checkpoint<GroupOffset[]>(nodeIO, dir, 'group-offsets', logger).save([{ topic: 'a', group: 'g', offset: 42 }]);
    const store = await openFile(dir, { logger });
    expect(await store.loadGroupOffsets()).toEqual([{ topic: 'a', group: 'g', offset: 42 }]);
    expect(logger.warnings).toEqual([]);
    await store.close();
  });

  it('bad saved counts are ignored with a warning; the position itself is kept', async () => {
    const logger = recordingLogger();
    const first = await openFile(dir, { logger });
    await first.close();
    await new Checkpoint<unknown[]>(nodeIO, dir, 'group-offsets', logger).save([
      { topic: 'a', group: 'g', offset: 7, deliveredUpTo: 20, deliveries: [[3, 'x']] },
      { ...withCounts, group: 'ok' },
    ]);
    const store = await openFile(dir, { logger });
    const loaded = (await store.loadGroupOffsets()).sort((x, y) => x.group.localeCompare(y.group));
    expect(loaded).toEqual([{ topic: 'a', group: 'g', offset: 7 }, { ...withCounts, group: 'ok' }]);
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toContain("group 'g' on 'a'");
    expect(logger.warnings[0]).toContain('position 7 is kept');
    await store.close();
  });

  it('bad counts in a commit are refused with INVALID_ARGUMENT and store nothing (file store)', async () => {
    const store = await openFile(dir);
    await rejectsBadExtras(store);
    await store.close();
  });

  it('the memory store keeps them too, as copies, and refuses the same bad input', async () => {
    const store = new MemoryStore();
    const entry: GroupOffset = { ...withCounts, deliveries: withCounts.deliveries!.map(([o, c]) => [o, c]) };
    await store.commitGroupOffsets([entry]);
    entry.deliveries![0][1] = 99;
    expect(await store.loadGroupOffsets()).toEqual([withCounts]);
    const other = new MemoryStore();
    await rejectsBadExtras(other);
  });
});
