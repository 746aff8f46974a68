import { describe, expect, it } from '@jest/globals';
import { RpcDeadlines } from '../../lib/nest/rpc-deadlines.js';

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe('RpcDeadlines', () => {
  it('expires pending requests in order and never the ended ones', async () => {
    const d = new RpcDeadlines();
    const fired: string[] = [];
    const a = d.add(20, () => fired.push('a'));
    d.add(20, () => fired.push('b'));
    const c = d.add(20, () => fired.push('c'));
    d.add(20, () => fired.push('d'));
    d.cancel(a);
    d.cancel(c);
    d.cancel(c); // idempotent
    expect(d.pending).toBe(2);
    await sleep(80);
    expect(fired).toEqual(['b', 'd']);
    expect(d.pending).toBe(0);
  });

  it('a request added while others expire still gets its full timeout', async () => {
    const d = new RpcDeadlines();
    const fired: string[] = [];
    d.add(10, () => {
      fired.push('first');
      d.add(60, () => fired.push('second'));
    });
    await sleep(40);
    expect(fired).toEqual(['first']);
    await sleep(80);
    expect(fired).toEqual(['first', 'second']);
  });

  it('keeps no timer once nothing is pending (an idle client lets the process exit)', async () => {
    const d = new RpcDeadlines();
    const fired: number[] = [];
    const all = Array.from({ length: 5000 }, (_, i) => d.add(30_000, () => fired.push(i)));
    // ended requests behind a stuck one do not pile up without bound
    for (const x of all.slice(1)) d.cancel(x);
    expect(d.pending).toBe(1);
    expect((d as unknown as { queue: { length: number } }).queue.length).toBeLessThan(2000);
    d.cancel(all[0]);
    expect(d.pending).toBe(0);
    expect((d as unknown as { timer: unknown }).timer).toBeUndefined();
    expect(fired).toEqual([]);
  });
});
