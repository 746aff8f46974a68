import * as fs from 'node:fs';

/**
 * Every file operation the store performs goes through this interface, so
 * tests can inject faults (ENOSPC at the Nth write, EIO on fsync, power loss)
 * without mocking modules. Paths are absolute or relative to the cwd; `fd`s
 * are opaque numbers owned by the implementation.
 */
export interface StoreIO {
  /** flags as in fs.open: 'r', 'r+', 'w+', 'wx' … */
  open(path: string, flags: string): Promise<number>;
  close(fd: number): Promise<void>;
  /** Positional write of buf[offset, offset+length) at `position`; returns bytes written (may be short). */
  write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** Positional read; returns bytes read (0 at EOF). */
  read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  /**
   * Makes bytes [position, position+length) real zero-filled blocks (not a
   * sparse hole, as ftruncate would), growing the file if needed; the range
   * must hold no data. Used to preallocate a segment ahead of its appends so
   * that a commit's fdatasync writes data only, not a new file size. Optional:
   * without it the store does not preallocate.
   */
  allocate?(fd: number, position: number, length: number): Promise<void>;
  fsize(fd: number): Promise<number>;
  /** Size of a file, or -1 if it does not exist. */
  size(path: string): Promise<number>;
  readFile(path: string): Promise<Buffer>;
  readdir(path: string): Promise<string[]>;
  mkdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Recursive delete of a directory (missing is fine). */
  rmdir(path: string): Promise<void>;
  /** Makes a directory's entries (new, renamed, deleted files) durable. */
  fsyncDir(path: string): Promise<void>;
}

const p = fs.promises;

/** Source of zeros for allocate(); never written to. */
const ZEROS = Buffer.alloc(1024 * 1024);

function cb<T>(fn: (done: (err: NodeJS.ErrnoException | null, v?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

/** The real thing: node:fs with callback APIs (cheaper than FileHandle per call). */
export const nodeIO: StoreIO = {
  open: (path, flags) => cb<number>(d => fs.open(path, flags, 0o644, d)),
  close: fd => cb<void>(d => fs.close(fd, d)),
  write: (fd, buf, offset, length, position) => cb<number>(d => fs.write(fd, buf, offset, length, position, d)),
  read: (fd, buf, offset, length, position) => cb<number>(d => fs.read(fd, buf, offset, length, position, d)),
  fdatasync: fd => cb<void>(d => fs.fdatasync(fd, d)),
  ftruncate: (fd, length) => cb<void>(d => fs.ftruncate(fd, length, d)),
  // Node has no fallocate(); writing zeros is what makes the blocks real (allocated and written).
  allocate: async (fd, position, length) => {
    for (let at = position, end = position + length; at < end; ) {
      const n = Math.min(ZEROS.length, end - at);
      await writeFully(nodeIO, fd, ZEROS, 0, n, at);
      at += n;
    }
  },
  fsize: fd => cb<fs.Stats>(d => fs.fstat(fd, d)).then(s => s.size),
  size: path =>
    p.stat(path).then(
      s => s.size,
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return -1;
        throw e;
      },
    ),
  readFile: path => p.readFile(path),
  readdir: path => p.readdir(path),
  mkdir: path => p.mkdir(path, { recursive: true }).then(() => undefined),
  rename: (from, to) => p.rename(from, to),
  unlink: path => p.unlink(path),
  rmdir: path => p.rm(path, { recursive: true, force: true }),
  fsyncDir: async path => {
    const fd = await cb<number>(d => fs.open(path, 'r', d));
    try {
      await cb<void>(d => fs.fsync(fd, d));
    } finally {
      await cb<void>(d => fs.close(fd, d));
    }
  },
};

/** Writes all of buf[offset, offset+length) at position, looping over short writes. */
export async function writeFully(io: StoreIO, fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<void> {
  while (length > 0) {
    const n = await io.write(fd, buf, offset, length, position);
    if (n <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
    offset += n;
    length -= n;
    position += n;
  }
}

/** Reads up to length bytes at position, looping over short reads; returns bytes read (< length only at EOF). */
export async function readFully(io: StoreIO, fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  let total = 0;
  while (total < length) {
    const n = await io.read(fd, buf, offset + total, length - total, position + total);
    if (n === 0) break;
    total += n;
  }
  return total;
}
