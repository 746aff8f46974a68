import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { FaultIO } from '../reliability/fault-io.js';
import { openFile, removeDir, tempDir, topicConfig } from './helpers.js';

describe('a topic whose files cannot all be opened', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => removeDir(dir));

  it('fails with STORAGE and keeps no descriptor open; the topic opens once descriptors are free again', async () => {
    const io = new FaultIO();
    // Opening a new topic's index file ('w+') fails as it does when the process is out of file descriptors.
    io.arm('open', 1, 'EMFILE', '.index');
    const store = await openFile(dir, { io });
    const heldByStore = io.paths.size;
    await expect(store.openTopic('t', topicConfig())).rejects.toMatchObject({ code: 'STORAGE', message: expect.stringContaining('EMFILE') });
    // The segment's .log was opened before the .index failed: it must have been closed again.
    expect([...io.paths.values()].filter(p => p.endsWith('.log'))).toEqual([]);
    expect(io.paths.size).toBe(heldByStore);

    io.clear();
    const log = await store.openTopic('t', topicConfig());
    const r = log.append([{ key: undefined, headers: undefined, value: Buffer.from('after') }]);
    await r.durable;
    expect((await log.read(0, 10)).map(m => m.value.toString())).toEqual(['after']);
    await store.close();
    expect(io.paths.size).toBe(0);
  });
});
