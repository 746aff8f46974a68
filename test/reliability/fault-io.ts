import { type StoreIO, nodeIO } from '../../lib/store/io.js';

export type FaultKind = 'write' | 'fdatasync' | 'open' | 'rename';

/**
 * nodeIO with SQLite-ioerr-style injection: once armed, the Nth operation of
 * one kind on a path containing `pathPart` fails with `code` — and so does
 * every later one of that kind until clear() (a full or failing disk stays so).
 * Opens for reading ('r') are never failed: the point is that reads go on.
 */
export class FaultIO implements StoreIO {
  private readonly paths = new Map<number, string>();
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

  async open(path: string, flags: string): Promise<number> {
    if (flags !== 'r') this.check('open', path);
    const fd = await nodeIO.open(path, flags);
    this.paths.set(fd, path);
    return fd;
  }
  close(fd: number): Promise<void> {
    this.paths.delete(fd);
    return nodeIO.close(fd);
  }
  async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    try {
      this.check('write', this.paths.get(fd));
    } catch (e) {
      if (this.torn && length > 1) await nodeIO.write(fd, buf, offset, length >> 1, position);
      throw e;
    }
    return nodeIO.write(fd, buf, offset, length, position);
  }
  async fdatasync(fd: number): Promise<void> {
    this.check('fdatasync', this.paths.get(fd));
    return nodeIO.fdatasync(fd);
  }
  async rename(from: string, to: string): Promise<void> {
    this.check('rename', to);
    return nodeIO.rename(from, to);
  }
  /** Preallocation writes zeros: it fails as a write would (a full disk is full for it too). */
  async allocate(fd: number, position: number, length: number): Promise<void> {
    this.check('write', this.paths.get(fd));
    return nodeIO.allocate!(fd, position, length);
  }
  read = nodeIO.read;
  ftruncate = nodeIO.ftruncate;
  fsize = nodeIO.fsize;
  size = nodeIO.size;
  readFile = nodeIO.readFile;
  readdir = nodeIO.readdir;
  mkdir = nodeIO.mkdir;
  unlink = nodeIO.unlink;
  rmdir = nodeIO.rmdir;
  fsyncDir = nodeIO.fsyncDir;
}
