import { crc32 } from 'node:zlib';
import { join } from 'node:path';
import { type StoreIO, writeFully } from './io.js';
import type { StoreLogger } from './types.js';

/**
 * A small JSON document saved crash-safely in two alternating slots,
 * `<name>-0.ckpt` and `<name>-1.ckpt`: each save writes a temp file, fsyncs
 * it, renames it over the slot not holding the newest good copy, and fsyncs
 * the directory. A torn or corrupt slot therefore always leaves the previous
 * good copy, and load() says which one it used.
 *
 * File: magic 'LBCK' | seq f64 | length u32 | crc32 (of magic..length + body) u32 | JSON body
 */
const MAGIC = 0x4b43424c; // 'LBCK' little endian
const HEAD = 20;
export const MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024;

export class Checkpoint<T> {
  private seq = 0;

  constructor(
    private readonly io: StoreIO,
    private readonly dir: string,
    private readonly name: string,
    private readonly logger: StoreLogger,
  ) {}

  private slot(i: number): string {
    return join(this.dir, `${this.name}-${i}.ckpt`);
  }

  /**
   * The newest valid copy, or undefined when there is none. `expectExisting`
   * (the store is not new) makes a missing checkpoint a warning too.
   */
  async load(expectExisting: boolean): Promise<T | undefined> {
    const found: { seq: number; value: T; slot: number }[] = [];
    let missing = 0;
    for (const i of [0, 1]) {
      const path = this.slot(i);
      const size = await this.io.size(path);
      if (size < 0) {
        missing++;
        continue;
      }
      const parsed = size > MAX_CHECKPOINT_BYTES + HEAD ? undefined : parse<T>(await this.io.readFile(path));
      if (parsed) found.push({ ...parsed, slot: i });
      else this.logger.warn(`logbus store: checkpoint ${path} is corrupt (checksum or format); ignoring it`);
    }
    found.sort((a, b) => b.seq - a.seq);
    const best = found[0];
    if (!best) {
      if (missing < 2 || expectExisting) {
        this.logger.warn(
          `logbus store: no valid ${this.name} checkpoint in ${this.dir}` +
            (missing < 2 ? ' (all copies corrupt)' : ' (missing)') +
            `; starting from an empty one. Group positions / topic configs saved earlier are lost`,
        );
      }
      return undefined;
    }
    if (found.length + missing < 2) {
      this.logger.warn(`logbus store: using the good ${this.name} checkpoint ${this.slot(best.slot)} (seq ${best.seq}) instead`);
    }
    this.seq = best.seq;
    return best.value;
  }

  /** Writes seq+1 into the slot other than the newest good one. */
  async save(value: T): Promise<void> {
    const body = Buffer.from(JSON.stringify(value), 'utf8');
    if (body.length > MAX_CHECKPOINT_BYTES) throw new Error(`checkpoint ${this.name} of ${body.length} bytes exceeds ${MAX_CHECKPOINT_BYTES}`);
    const seq = this.seq + 1;
    const buf = Buffer.allocUnsafe(HEAD + body.length);
    buf.writeUInt32LE(MAGIC, 0);
    buf.writeDoubleLE(seq, 4);
    buf.writeUInt32LE(body.length, 12);
    body.copy(buf, HEAD);
    buf.writeUInt32LE(crc32(body, crc32(buf.subarray(0, 16))), 16);
    const target = this.slot(seq % 2);
    const tmp = `${target}.tmp`;
    const fd = await this.io.open(tmp, 'w');
    try {
      await writeFully(this.io, fd, buf, 0, buf.length, 0);
      await this.io.fdatasync(fd);
    } finally {
      await this.io.close(fd);
    }
    await this.io.rename(tmp, target);
    await this.io.fsyncDir(this.dir);
    this.seq = seq;
  }
}

function parse<T>(buf: Buffer): { seq: number; value: T } | undefined {
  if (buf.length < HEAD || buf.readUInt32LE(0) !== MAGIC) return undefined;
  const seq = buf.readDoubleLE(4);
  const len = buf.readUInt32LE(12);
  if (!Number.isSafeInteger(seq) || buf.length !== HEAD + len) return undefined;
  const body = buf.subarray(HEAD);
  if (crc32(body, crc32(buf.subarray(0, 16))) !== buf.readUInt32LE(16)) return undefined;
  try {
    return { seq, value: JSON.parse(body.toString('utf8')) as T };
  } catch {
    return undefined;
  }
}

/**
 * Coalesces saves: a request made while a save runs is served by the next
 * single save, which snapshots state when it starts.
 */
export class Coalescer {
  private running = false;
  private last: Promise<void> = Promise.resolve();
  private waiting: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | null = null;

  constructor(private readonly work: () => Promise<void>) {}

  request(): Promise<void> {
    const w = this.waiting;
    if (w) return w.promise;
    {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.waiting = { promise, resolve, reject };
      this.last = promise.catch(() => {});
      if (!this.running) void this.run();
      return promise;
    }
  }

  /** Resolves once every requested save has finished (failed ones included). */
  idle(): Promise<void> {
    return this.last;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      try {
        await this.work();
        w.resolve();
      } catch (e) {
        w.reject(e);
      }
    }
    this.running = false;
  }
}
