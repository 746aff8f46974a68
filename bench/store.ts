/**
 * Store benchmark (not a test): append, sequential read and open/recovery of
 * the file log, with Redis XADD (redis-benchmark -P 16) as the reference.
 *
 *   npx tsc -p tsconfig.json && node .build/bench/store.js [--quick]
 *   (or LOGBUS_BENCH_QUICK=1). Data lives in os.tmpdir() and is deleted.
 */
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  fdatasync,
  fdatasyncSync,
  write as fsWrite,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../lib/store/file-store.js';
import type { FsyncMode } from '../lib/options.js';
import type { AppendRecord, TopicLog, TopicLogConfig } from '../lib/store/types.js';

const quick = process.argv.includes('--quick') || process.env.LOGBUS_BENCH_QUICK === '1';
const MiB = 1024 * 1024;
const SECONDS = quick ? 0.6 : 2;
const OPEN_LOG_BYTES = quick ? 128 * MiB : 1024 * MiB;
const READ_RECORDS = quick ? 500_000 : 3_000_000;

const cfg: TopicLogConfig = {
  segmentBytes: 64 * MiB,
  maxMessageBytes: MiB,
  retention: { maxAgeMs: Number.MAX_SAFE_INTEGER, maxBytes: Number.MAX_SAFE_INTEGER },
};
const silent = { warn: () => {}, error: (m: string) => console.error(m) };

interface Row {
  what: string;
  records: number;
  seconds: number;
  bytes: number;
  note?: string;
  /** An open-time row: the note is the figure, no records/s or MB/s. */
  timing?: boolean;
}
const rows: Row[] = [];

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'logbus-bench-'));
}

function records(n: number, size: number): AppendRecord[] {
  const value = Buffer.alloc(size, 0x61);
  return Array.from({ length: n }, () => ({ key: undefined, headers: undefined, value }));
}

async function withLog<T>(fsync: FsyncMode, fn: (log: TopicLog, dir: string) => Promise<T>): Promise<T> {
  const dir = tmp();
  const store = await FileStore.open({ dataDir: dir, fsync, logger: silent });
  try {
    return await fn(await store.openTopic('bench', cfg), dir);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `appenders` loops, each appending `batch` records and awaiting durable before the next. */
async function appendBench(fsync: FsyncMode, size: number, appenders: number, batch: number): Promise<void> {
  await withLog(fsync, async log => {
    const recs = records(batch, size);
    let count = 0;
    const until = performance.now() + SECONDS * 1000;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: appenders }, async () => {
        while (performance.now() < until) {
          await log.append(recs).durable;
          count += batch;
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    rows.push({ what: `append ${size} B, fsync ${fsync}, ${appenders} appender(s) × ${batch}/append`, records: count, seconds, bytes: count * size });
  });
}

/**
 * One producer that does not wait per append (the broker's publish path):
 * 1 record per append, windows of 4096, awaiting the window before the last
 * so the write of one window overlaps the encoding of the next.
 */
async function pipelinedBench(fsync: FsyncMode, size: number): Promise<void> {
  await withLog(fsync, async log => {
    const rec = records(1, size);
    let count = 0;
    const until = performance.now() + SECONDS * 1000;
    const start = performance.now();
    let previous: Promise<void> = Promise.resolve();
    while (performance.now() < until) {
      let last: Promise<void> = previous;
      for (let i = 0; i < 4096; i++) last = log.append(rec).durable;
      await previous;
      previous = last;
      count += 4096;
    }
    await previous;
    const seconds = (performance.now() - start) / 1000;
    rows.push({ what: `append ${size} B, fsync ${fsync}, pipelined 1 record/append`, records: count, seconds, bytes: count * size });
  });
}

async function readBench(): Promise<void> {
  const dir = tmp();
  try {
    let store = await FileStore.open({ dataDir: dir, fsync: 'never', logger: silent });
    let log = await store.openTopic('bench', cfg);
    const recs = records(100, 100);
    for (let i = 0; i < READ_RECORDS; i += 100) {
      log.append(recs);
      if (i % 100_000 === 0) await log.flush();
    }
    await store.close();
    store = await FileStore.open({ dataDir: dir, fsync: 'never', logger: silent });
    log = await store.openTopic('bench', cfg);
    let from = 0;
    let bytes = 0;
    const start = performance.now();
    while (from < log.nextOffset) {
      const got = await log.read(from, 10_000);
      for (const r of got) bytes += r.value.length;
      from += got.length;
    }
    const seconds = (performance.now() - start) / 1000;
    rows.push({ what: 'sequential read from disk, 100 B, 10k/read', records: from, seconds, bytes });
    // Tailing reader: records appended in this session come from the in-memory cache.
    const tail = log.nextOffset;
    for (let i = 0; i < 20_000; i += 100) log.append(recs);
    await log.flush();
    const t0 = performance.now();
    let n = 0;
    for (let k = 0; k < 50; k++) for (let f = tail; f < log.nextOffset; f += 1000) n += (await log.read(f, 1000)).length;
    rows.push({ what: 'tail read from cache, 100 B, 1k/read', records: n, seconds: (performance.now() - t0) / 1000, bytes: n * 100 });
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function timeOpen(dir: string): Promise<{ ms: number; next: number }> {
  const t0 = performance.now();
  const store = await FileStore.open({ dataDir: dir, fsync: 'always', logger: silent });
  const log = await store.openTopic('bench', cfg);
  const ms = performance.now() - t0;
  const next = log.nextOffset;
  await store.close();
  return { ms, next };
}

async function openBench(): Promise<void> {
  const dir = tmp();
  try {
    const store = await FileStore.open({ dataDir: dir, fsync: 'never', logger: silent });
    const log = await store.openTopic('bench', cfg);
    const recs = records(64, 1024);
    const t0 = performance.now();
    // Past the size so the active (last) segment is partly filled, as after a crash.
    while (log.sizeBytes < OPEN_LOG_BYTES + 40 * MiB) {
      log.append(recs);
      if (log.nextOffset % (64 * 256) === 0) await log.flush();
    }
    await log.flush();
    const writeSeconds = (performance.now() - t0) / 1000;
    const total = log.nextOffset;
    await store.close();
    const label = `${Math.round(log.sizeBytes / MiB)} MiB log`;
    rows.push({ what: `write ${label} (1 KiB, fsync never, 64/append)`, records: total, seconds: writeSeconds, bytes: total * 1024 });
    const tdir = join(dir, 'topics', 'bench');
    const segs = readdirSync(tdir).filter(f => f.endsWith('.log')).sort();
    const active = join(tdir, segs[segs.length - 1]);

    const clean = await timeOpen(dir);
    rows.push({ what: `open cleanly closed ${label} (${segs.length} segments)`, records: clean.next, seconds: clean.ms / 1000, bytes: 0, note: `${clean.ms.toFixed(1)} ms`, timing: true });
    // Crash-like: torn garbage after the last batch.
    appendFileSync(active, Buffer.alloc(777, 0x5a));
    const torn = await timeOpen(dir);
    rows.push({ what: `open ${label} with a torn tail`, records: torn.next, seconds: torn.ms / 1000, bytes: 0, note: `${torn.ms.toFixed(1)} ms`, timing: true });
    // Worst case: the active segment's index is lost, so the whole active segment is scanned.
    unlinkSync(active.replace(/\.log$/, '.index'));
    const activeMiB = (statSync(active).size / MiB).toFixed(0);
    const lost = await timeOpen(dir);
    rows.push({
      what: `open ${label}, active segment index lost (scan ${activeMiB} MiB)`,
      records: lost.next,
      seconds: lost.ms / 1000,
      bytes: 0,
      note: `${lost.ms.toFixed(1)} ms`,
      timing: true,
    });
    if (clean.next !== total || torn.next !== total || lost.next !== total) throw new Error('open lost records');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The disk's own ceiling for 'always' with 64 appenders of 1 record: with no
 * store at all, a loop of one write of 64 encoded records (~8.7 KB) and one
 * fdatasync, on a preallocated file, as the store does per group commit. Every
 * appender waits for the sync, so records/s can never exceed 64 / this cycle.
 */
async function deviceCeiling(): Promise<void> {
  const dir = tmp();
  try {
    const file = join(dir, 'device.dat');
    const fd = openSync(file, 'w+');
    try {
      writeSync(fd, Buffer.alloc(64 * MiB));
      fdatasyncSync(fd);
      const buf = Buffer.alloc(64 * 136, 7);
      const write = (pos: number) => new Promise<void>((ok, fail) => fsWrite(fd, buf, 0, buf.length, pos, e => (e ? fail(e) : ok())));
      const sync = () => new Promise<void>((ok, fail) => fdatasync(fd, e => (e ? fail(e) : ok())));
      let cycles = 0;
      const start = performance.now();
      for (let pos = 0; performance.now() - start < SECONDS * 1000 && pos + buf.length <= 64 * MiB; pos += buf.length) {
        await write(pos);
        await sync();
        cycles++;
      }
      const seconds = (performance.now() - start) / 1000;
      rows.push({
        what: 'device ceiling: write 64 × 100 B + fdatasync, no store (reference)',
        records: cycles * 64,
        seconds,
        bytes: cycles * 64 * 100,
        note: `${((seconds / cycles) * 1e6).toFixed(0)} µs per write+fdatasync`,
      });
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function redisXadd(): void {
  const value = 'x'.repeat(100);
  try {
    const out = execFileSync('redis-benchmark', ['-q', '-n', quick ? '100000' : '200000', '-P', '16', 'XADD', 'logbus:bench:stream', '*', 'f', value], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const m = /([\d.]+) requests per second/.exec(out.split('\r').pop() ?? out);
    if (m) rows.push({ what: 'Redis XADD 100 B (redis-benchmark -P 16, reference)', records: Number(m[1]), seconds: 1, bytes: Number(m[1]) * 100 });
  } catch (e) {
    console.error(`redis-benchmark unavailable: ${(e as Error).message}`);
  } finally {
    try {
      execFileSync('redis-cli', ['del', 'logbus:bench:stream'], { stdio: 'ignore' });
    } catch {
      /* no redis-cli */
    }
  }
}

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1);
}

async function main(): Promise<void> {
  console.error(`logbus store bench${quick ? ' (--quick)' : ''}: node ${process.version}, ${cpus().length} cores, ${tmpdir()}`);
  for (const size of [100, 1024]) {
    await pipelinedBench('never', size);
    await appendBench('never', size, 1, 100);
    await appendBench('never', size, 64, 1);
    await appendBench('interval', size, 64, 1);
    await appendBench('always', size, 1, 1);
    await appendBench('always', size, 64, 1);
    await appendBench('always', size, 64, 10);
    if (size === 100) await deviceCeiling();
  }
  await readBench();
  await openBench();
  redisXadd();
  console.log(`| benchmark | records | records/s | MB/s | note |`);
  console.log(`| --- | ---: | ---: | ---: | --- |`);
  for (const r of rows) {
    const timing = r.timing === true; // open-time rows: the note is the figure
    console.log(
      `| ${r.what} | ${fmt(r.records)} | ${timing ? '' : fmt(r.records / r.seconds)} | ${timing ? '' : fmt(r.bytes / r.seconds / 1e6)} | ${r.note ?? ''} |`,
    );
  }
}

await main();
