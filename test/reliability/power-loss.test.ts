import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../lib/store/file-store.js';
import { SimDisk, prng } from './sim-disk.js';
import { brokerPowerLossRound } from './broker-power-loss.js';
import { powerLossRound } from './power-loss.js';

let root: string;
let dir: string;
let n = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'logbus-power-'));
});
// A directory per test: a failing one must not leave its LOCK in the way of the next.
beforeEach(() => {
  dir = join(root, String(n++));
  mkdirSync(dir);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const cfg = { segmentBytes: 1 << 20, maxMessageBytes: 1 << 20, retention: { maxAgeMs: 1e12, maxBytes: 1e12 } };
const quiet = { warn: () => {}, error: () => {} };

describe('SimDisk', () => {
  it('keeps synced bytes and synced directory entries across a crash, and can drop the rest', async () => {
    // Over many seeds, an unsynced write is sometimes kept and sometimes not; a synced one always is.
    const outcomes = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const disk = new SimDisk(prng(seed));
      disk.mkdirDurable('/d');
      const io = disk.io();
      const fd = await io.open('/d/a', 'w+');
      await io.fsyncDir('/d');
      await io.write(fd, Buffer.from('synced'), 0, 6, 0);
      await io.fdatasync(fd);
      await io.write(fd, Buffer.from('-later'), 0, 6, 6);
      const fd2 = await io.open('/d/b', 'w+');
      await io.write(fd2, Buffer.from('x'), 0, 1, 0);
      await io.fdatasync(fd2);
      disk.crash();
      await expect(io.write(fd, Buffer.from('z'), 0, 1, 0)).rejects.toMatchObject({ code: 'EIO' });
      const after = disk.io();
      const a = (await after.readFile('/d/a')).toString();
      expect(a.startsWith('synced')).toBe(true);
      expect('synced-later'.startsWith(a)).toBe(true);
      outcomes.add(`${a.length === 6 ? 'dropped' : a.length === 12 ? 'kept' : 'torn'}/${(await after.size('/d/b')) < 0 ? 'no-b' : 'b'}`);
    }
    for (const o of ['dropped/no-b', 'kept/b', 'torn/no-b']) expect(outcomes).toContain(o);
  });

  it('the store on a SimDisk round-trips records through a clean close', async () => {
    const disk = new SimDisk(prng(7));
    disk.mkdirDurable(dir);
    let store = await FileStore.open({ dataDir: dir, fsync: 'always', io: disk.io(), logger: quiet });
    let log = await store.openTopic('t', cfg);
    await log.append([{ key: 'a', headers: undefined, value: Buffer.from('hello') }]).durable;
    await store.close();
    disk.crash();
    store = await FileStore.open({ dataDir: dir, fsync: 'always', io: disk.io(), logger: quiet });
    log = await store.openTopic('t', cfg);
    expect((await log.read(0, 10)).map(r => r.value.toString())).toEqual(['hello']);
    await store.close();
  });
});

describe('power loss with fsync always', () => {
  it('never loses an acknowledged append or commit, never serves garbage (seeded rounds)', async () => {
    const totals = { losses: 0, lossesInOpen: 0, acked: 0, checked: 0, deletes: 0, commits: 0 };
    for (let seed = 1; seed <= 20; seed++) {
      const s = await powerLossRound(seed, dir, 15);
      totals.losses += s.losses;
      totals.lossesInOpen += s.lossesInOpen;
      totals.acked += s.appendsAcked;
      totals.checked += s.recordsChecked;
      totals.deletes += s.retentionDeletes;
      totals.commits += s.commitsAcked;
    }
    // The rounds must really have exercised crashes in recovery, retention and commits.
    expect(totals.losses).toBeGreaterThanOrEqual(300);
    expect(totals.lossesInOpen).toBeGreaterThan(0);
    expect(totals.deletes).toBeGreaterThan(0);
    expect(totals.commits).toBeGreaterThan(0);
    expect(totals.checked).toBeGreaterThan(totals.acked);
  }, 60_000);

  it("fsync 'interval': a loss may drop unsynced appends but never leaves damage that recovery does not cut", async () => {
    // Regressions (both reported CORRUPT for good after a loss, seeds 1 and 6):
    //  - a new segment reached the disk before the previous one was synced: a sealed segment missing its tail;
    //  - index entries reached the disk before the log bytes they point at: recovery trusted them and kept a hole.
    let losses = 0;
    for (let seed = 1; seed <= 7; seed++) losses += (await powerLossRound(seed, dir, 12, 'interval')).losses;
    expect(losses).toBeGreaterThanOrEqual(84);
  }, 60_000);
});

describe('retention racing the flush loop', () => {
  it('deleting segments while the flush loop finalizes a rolled one does not fail the log', async () => {
    // Regression: the finalize loop indexed this.segments across awaits; retention shifting
    // it meanwhile made it read past the end and fail the log with STORAGE.
    const disk = new SimDisk(prng(3));
    disk.mkdirDurable(dir);
    const store = await FileStore.open({ dataDir: dir, fsync: 'always', io: disk.io(), logger: quiet });
    const log = await store.openTopic('race', { segmentBytes: 150, maxMessageBytes: 1 << 20, retention: { maxAgeMs: 0, maxBytes: 1e12 } });
    let t = 1000;
    const durables: Promise<void>[] = [];
    let deleted = 0;
    for (let i = 0; i < 400; i++) {
      durables.push(log.append([{ key: undefined, headers: undefined, value: Buffer.alloc(60, i) }], t++).durable);
      if (i % 3 === 0) void log.enforceRetention(t + 10).then(r => void (deleted += r.deletedSegments));
      for (let k = 0; k < i % 4; k++) await Promise.resolve();
    }
    await Promise.all(durables);
    expect(deleted).toBeGreaterThan(10);
    expect(log.nextOffset).toBe(400);
    await store.close();
  });
});

describe('power loss under the broker (fsync always)', () => {
  it('acknowledged publishes survive exact and in order; the group position never passes an unacked message', async () => {
    const totals = { losses: 0, publishesAcked: 0, consumerAcks: 0, redelivered: 0 };
    for (let seed = 1; seed <= 15; seed++) {
      const sub = join(dir, String(seed));
      mkdirSync(sub);
      const s = await brokerPowerLossRound(seed, sub, 10);
      for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += s[k];
    }
    expect(totals.losses).toBe(150);
    expect(totals.publishesAcked).toBeGreaterThan(1000);
    // Consumers really were cut off mid-stream and got messages again after recovery.
    expect(totals.consumerAcks).toBeGreaterThan(1000);
    expect(totals.redelivered).toBeGreaterThan(0);
  }, 60_000);
});
