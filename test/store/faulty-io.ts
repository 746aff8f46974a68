import { type StoreIO, nodeIO } from '../../lib/store/io.js';

const errno = (code: string) => Object.assign(new Error(`${code}: injected fault`), { code });

/**
 * nodeIO with fault injection and accounting, for tests: fail the Nth write
 * to a segment file (optionally after writing part of it), fail fdatasync,
 * and count bytes read.
 */
export class FaultyIO implements StoreIO {
  readonly paths = new Map<number, string>();
  segmentWrites = 0;
  bytesRead = 0;
  /** 1-based index of the segment (.log) write that fails; 0 = none. */
  failSegmentWriteAt = 0;
  /** Bytes of the failing write that still reach the file (a short, torn write). */
  partialBytes = 0;
  failCode = 'ENOSPC';
  failFdatasync = false;
  segmentSyncs = 0;

  open(path: string, flags: string): Promise<number> {
    return nodeIO.open(path, flags).then(fd => {
      this.paths.set(fd, path);
      return fd;
    });
  }
  close(fd: number): Promise<void> {
    this.paths.delete(fd);
    return nodeIO.close(fd);
  }
  async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.paths.get(fd)?.endsWith('.log')) {
      this.segmentWrites++;
      if (this.segmentWrites === this.failSegmentWriteAt) {
        if (this.partialBytes > 0) await nodeIO.write(fd, buf, offset, Math.min(this.partialBytes, length), position);
        throw errno(this.failCode);
      }
    }
    return nodeIO.write(fd, buf, offset, length, position);
  }
  async read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const n = await nodeIO.read(fd, buf, offset, length, position);
    this.bytesRead += n;
    return n;
  }
  fdatasync(fd: number): Promise<void> {
    if (this.paths.get(fd)?.endsWith('.log')) {
      if (this.failFdatasync) return Promise.reject(errno('EIO'));
      this.segmentSyncs++;
    }
    return nodeIO.fdatasync(fd);
  }
  ftruncate = nodeIO.ftruncate;
  /** Preallocation is not a segment write here: the counts above are of data writes. */
  allocate = nodeIO.allocate;
  fsize = nodeIO.fsize;
  size = nodeIO.size;
  async readFile(path: string): Promise<Buffer> {
    const b = await nodeIO.readFile(path);
    this.bytesRead += b.length;
    return b;
  }
  readdir = nodeIO.readdir;
  mkdir = nodeIO.mkdir;
  rename = nodeIO.rename;
  unlink = nodeIO.unlink;
  rmdir = nodeIO.rmdir;
  fsyncDir = nodeIO.fsyncDir;
}
