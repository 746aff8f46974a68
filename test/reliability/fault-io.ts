import { nodeIO } from '../../lib/store/io.js';
import { PathTrackingIO } from '../store/path-tracking-io.js';

export type FaultKind = 'write' | 'fdatasync' | 'open' | 'rename';

/**
 * nodeIO with SQLite-ioerr-style injection: once armed, the Nth operation of
 * one kind on a path containing `pathPart` fails with `code` — and so does
 * every later one of that kind until clear() (a full or failing disk stays so).
 * Opens for reading ('r') are never failed: the point is that reads go on.
 */
export class FaultIO extends PathTrackingIO {
  private kind: FaultKind | null = null;
  private at = 0;
  private seen = 0;
  private code = 'EIO';
  private pathPart = '';
  /** A failing write first puts half its bytes in the file (a torn write). */
  private torn = false;
  injected = 0;

  arm(kind: FaultKind, at: number, code: string, pathPart: string, torn = false): void {
    this.torn = torn;
    this.kind = kind;
    this.at = at;
    this.seen = 0;
    this.code = code;
    this.pathPart = pathPart;
  }
  clear(): void {
    this.kind = null;
  }

  private check(kind: FaultKind, path: string | undefined): void {
    if (this.kind !== kind || !path?.includes(this.pathPart)) return;
    if (++this.seen >= this.at) {
      this.injected++;
      throw Object.assign(new Error(`${this.code}: injected fault on ${kind} ${path}`), { code: this.code });
    }
  }

  override async open(path: string, flags: string): Promise<number> {
    if (flags !== 'r') this.check('open', path);
    return super.open(path, flags);
  }
  override async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    try {
      this.check('write', this.paths.get(fd));
    } catch (e) {
      if (this.torn && length > 1) await nodeIO.write(fd, buf, offset, length >> 1, position);
      throw e;
    }
    return super.write(fd, buf, offset, length, position);
  }
  override async fdatasync(fd: number): Promise<void> {
    this.check('fdatasync', this.paths.get(fd));
    return super.fdatasync(fd);
  }
  override async rename(from: string, to: string): Promise<void> {
    this.check('rename', to);
    return super.rename(from, to);
  }
  /** Preallocation writes zeros: it fails as a write would (a full disk is full for it too). */
  override async allocate(fd: number, position: number, length: number): Promise<void> {
    this.check('write', this.paths.get(fd));
    return super.allocate(fd, position, length);
  }
}
