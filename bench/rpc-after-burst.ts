/**
 * RPC with 100 in flight, before and after a burst of other requests, in one
 * process over the wire (connection level, no Nest). It guards issue 5's
 * finding: with a Map per request table (set and delete per request), a burst
 * of produce calls left RPC about a quarter slower for the rest of the
 * process's life, because V8 then promoted every hash table the Maps
 * reallocated (`--trace-gc-nvp`: promoted 0 -> ~1 MB per scavenge). The tables
 * of requests and deliveries in flight are IdTables now (lib/id-table.ts);
 * after / before should be about 1.
 *
 *   npx tsc -p tsconfig.json && node .build/bench/rpc-after-burst.js [--burst 400000] [--requests 100000]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WireLogger } from '../lib/wire/server.js';
import { LogBroker } from '../lib/wire/log-broker.js';
import { arg, produceAll, wireConn } from './common.js';

const burst = Number(arg('burst', '400000'));
const requests = Number(arg('requests', '100000'));
const quiet: WireLogger = { log: () => {}, warn: () => {} };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logbus-rpc-burst-'));
const broker = await LogBroker.start({ dataDir: dir, port: 0, fsync: 'never', logger: { log: () => {}, warn: () => {}, error: () => {} }, wire: { logger: quiet } });
const connect = () => wireConn(`logbus://127.0.0.1:${broker.address().port}`, { rpcTimeoutMs: 30_000, logger: quiet });
const responder = await connect();
const caller = await connect();
await responder.serveRpc('echo', req => req.reply(req.value, true));
await caller.createTopic('burst', { durable: false });
const value = Buffer.alloc(100, 97);

/** requests/s with `concurrency` requests in flight. */
async function rpc(n: number, concurrency: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      next++;
      await new Promise<void>((resolve, reject) => caller.request('echo', value, { reply: () => resolve(), error: reject }));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return n / ((performance.now() - t0) / 1000);
}

const k = (x: number) => `${Math.round(x / 1000)}k`;
const before = [await rpc(requests, 100), await rpc(requests, 100), await rpc(requests, 100)];
await produceAll(caller, 'burst', Array.from({ length: 1000 }, () => ({ value })), burst, 1);
const after = [await rpc(requests, 100), await rpc(requests, 100), await rpc(requests, 100)];
console.log(`RPC c100 req/s before a burst of ${burst} produced messages: ${before.map(k).join(' ')}; after: ${after.map(k).join(' ')}`);
console.log(`after / before (last of each): ${(after[2] / before[2]).toFixed(2)}`);
await caller.close();
await responder.close();
await broker.close();
fs.rmSync(dir, { recursive: true, force: true });
