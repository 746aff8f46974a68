import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openFile, removeDir, tempDir } from './helpers.js';

const startOf = (pid: number): string => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
};

describe('dataDir lock (within this process)', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => removeDir(dir));

  it('writes pid and start time, refuses a second open here, and releases on close', async () => {
    const store = await openFile(dir);
    expect(readFileSync(join(dir, 'LOCK'), 'utf8')).toBe(`${process.pid} ${startOf(process.pid)}\n`);
    await expect(openFile(dir)).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringContaining('this process') });
    await store.close();
    await (await openFile(dir)).close();
  });

  it('refuses a lock whose owner runs (same pid, same start time)', async () => {
    await (await openFile(dir)).close();
    const owner = process.ppid;
    writeFileSync(join(dir, 'LOCK'), `${owner} ${startOf(owner)}\n`);
    await expect(openFile(dir)).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringContaining(`process ${owner}`) });
  });

  it('takes over a lock whose pid now belongs to another process (restart reused the pid)', async () => {
    writeFileSync(join(dir, 'LOCK'), `${process.ppid} 1\n`);
    const store = await openFile(dir);
    expect(readFileSync(join(dir, 'LOCK'), 'utf8')).toBe(`${process.pid} ${startOf(process.pid)}\n`);
    await store.close();
  });

  it('takes over a lock left with our own pid by a previous run (a container restarted as the same pid)', async () => {
    writeFileSync(join(dir, 'LOCK'), `${process.pid} 1\n`);
    const store = await openFile(dir);
    await store.close();
  });

  it('takes over a lock with garbage in it', async () => {
    writeFileSync(join(dir, 'LOCK'), 'not a pid');
    await (await openFile(dir)).close();
  });
});
