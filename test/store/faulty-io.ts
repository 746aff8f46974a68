import { nodeIO } from '../../lib/store/io.js';
import { PathTrackingIO } from './path-tracking-io.js';

const errno = (code: string) => Object.assign(new Error(`${code}: injected fault`), { code });

/**
 * nodeIO with fault injection and accounting, for tests: fail the Nth write
 * to a segment file (optionally after writing part of it), fail fdatasync,
 * and count bytes read.
 */
export class FaultyIO extends PathTrackingIO {
  segmentWrites = 0;
  bytesRead = 0;
  /** 1-based index of the segment (.log) write that fails; 0 = none. */
  failSegmentWriteAt = 0;
  /** Bytes of the failing write that still reach the file (a short, torn write). */
  partialBytes = 0;
  failCode = 'ENOSPC';
  failFdatasync = false;
  segmentSyncs = 0;

  override async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.paths.get(fd)?.endsWith('.log')) {
      this.segmentWrites++;
      if (this.segmentWrites === this.failSegmentWriteAt) {
        if (this.partialBytes > 0) await nodeIO.write(fd, buf, offset, Math.min(this.partialBytes, length), position);
        throw errno(this.failCode);
      }
    }
    return super.write(fd, buf, offset, length, position);
  }
  override async read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const n = await super.read(fd, buf, offset, length, position);
    this.bytesRead += n;
    return n;
  }
  override fdatasync(fd: number): Promise<void> {
    if (this.paths.get(fd)?.endsWith('.log')) {
      if (this.failFdatasync) return Promise.reject(errno('EIO'));
      this.segmentSyncs++;
    }
    return super.fdatasync(fd);
  }
  // allocate() passes through uncounted: preallocation is not a segment data write here.
  override async readFile(path: string): Promise<Buffer> {
    const b = await super.readFile(path);
    this.bytesRead += b.length;
    return b;
  }
}
