import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker/broker.js';
import type { Delivery } from '../../lib/connection/types.js';
import { FileStore } from '../../lib/store/file-store.js';
import { type FaultKind, FaultIO } from './fault-io.js';

/**
 * One disk-fault case through the broker: topic 'd1' (durable, small
 * segments so opens happen) gets a fault at the Nth `kind` operation (a
 * failing write at odd N first writes half its bytes: torn) while a
 * producer publishes `messages` one by one (some in concurrent pairs); 'd2'
 * (durable) and 'p' (push only, with a subscriber) are used alongside.
 * Returns what happened; throws on any broken promise.
 */
export interface FaultCaseResult {
  injected: boolean;
  acked: number;
  failed: number;
}

const quiet = { log() {}, warn() {}, error() {} };

export async function diskFaultCase(kind: FaultKind, at: number, code: string, messages = 24): Promise<FaultCaseResult> {
  const dir = mkdtempSync(join(tmpdir(), 'logbus-fault-'));
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`${kind}#${at} ${code}: ${what}`);
  };
  const topics = { d1: { segmentBytes: 4096 }, d2: {}, p: { durable: false } };
  try {
    const io = new FaultIO();
    const store = await FileStore.open({ dataDir: dir, fsync: 'always', io, logger: quiet });
    let broker = await Broker.open({ dataDir: dir, store, topics, retentionCheckMs: 0, logger: quiet });
    const c = broker.connect();
    const pushed: Delivery[] = [];
    await c.subscribe({ pattern: 'p' }, d => pushed.push(d));
    // Renames are the checkpoints' (group offsets): a committed position is what fails there.
    io.arm(kind, at, code, kind === 'rename' ? 'group-offsets' : '/topics/d1/', at % 2 === 1);
    const value = (i: number) => Buffer.concat([Buffer.from(`m${i}:`), Buffer.alloc(400, i)]);
    const outcome: ('ok' | string)[] = [];
    let i = 0;
    while (i < messages) {
      const pair = i % 5 === 4 && i + 1 < messages ? [i, i + 1] : [i];
      const done = pair.map(k =>
        c.produce('d1', [{ value: value(k), key: `k${k % 3}` }]).then(
          r => {
            check(r[0].offset !== undefined, 'durable produce without an offset');
            outcome[k] = 'ok';
          },
          (e: { code?: string }) => void (outcome[k] = e.code ?? 'no code'),
        ),
      );
      await Promise.all(done);
      if (kind === 'rename') await store.commitGroupOffsets([{ topic: 'd1', group: 'g', offset: i }]).catch(() => {});
      i += pair.length;
    }
    const firstFail = outcome.findIndex(o => o !== 'ok');
    const acked = outcome.filter(o => o === 'ok').length;
    if (firstFail >= 0) {
      check(kind !== 'rename', 'a checkpoint fault failed a produce');
      for (let k = firstFail; k < messages; k++) {
        // Nothing after the gap is acknowledged, and every failure says STORAGE.
        check(outcome[k] === 'STORAGE', `produce ${k} after the fault gave ${outcome[k]}, not STORAGE`);
      }
    }
    // The broker keeps serving: reads of the failed topic, other durable topics, push.
    const read = await c.read('d1', 'earliest', 1000);
    check(read.length >= acked, `read returned ${read.length} < ${acked} acked`);
    for (let k = 0; k < acked; k++) check(read[k].value.equals(value(k)), `read ${k} differs`);
    const d2 = await c.produce('d2', [{ value: Buffer.from('other') }]);
    check(d2[0].offset === 0, 'd2 produce failed');
    await c.produce('p', [{ value: Buffer.from('push') }]);
    await new Promise(r => setImmediate(r));
    check(pushed.length === 1, `push delivered ${pushed.length}`);
    await c.close();
    await broker.close().catch(() => {});

    // Fault cleared, reopened: the log is whole and takes appends again.
    io.clear();
    broker = await Broker.open({ dataDir: dir, fsync: 'always', topics, retentionCheckMs: 0, logger: quiet });
    const c2 = broker.connect();
    const all = await c2.read('d1', 'earliest', 1000);
    check(all.length >= acked, `after reopen ${all.length} records < ${acked} acked`);
    all.forEach((r, k) => {
      // A failed (unacked) publish may survive if its bytes made it; it is never torn or out of order.
      check(r.offset === k && r.value.equals(value(k)), `after reopen record ${k} is not message ${k}`);
    });
    const again = await c2.produce('d1', [{ value: Buffer.from('after') }]);
    check(again[0].offset === all.length, 'append after reopen did not continue the log');
    if (kind === 'rename') {
      const g = (await c2.groups('d1')).find(x => x.group === 'g');
      check(g === undefined || g.committedOffset <= messages, 'group offset beyond anything committed');
    }
    await c2.close();
    await broker.close();
    return { injected: io.injected > 0, acked, failed: messages - acked };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
