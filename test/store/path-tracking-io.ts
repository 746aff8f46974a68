import { type StoreIO, nodeIO } from '../../lib/store/io.js';

/**
 * nodeIO that remembers the path of every open fd: the base of the test doubles
 * that inject faults or count work by file. Everything is a prototype method, so
 * a subclass overrides just the calls it interferes with.
 */
export class PathTrackingIO implements StoreIO {
  readonly paths = new Map<number, string>();
  /** The most fds open at once (opens through this IO; readFile and fsyncDir use their own). */
  maxOpen = 0;

  async open(path: string, flags: string): Promise<number> {
    const fd = await nodeIO.open(path, flags);
    this.paths.set(fd, path);
    this.maxOpen = Math.max(this.maxOpen, this.paths.size);
    return fd;
  }
  close(fd: number): Promise<void> {
    this.paths.delete(fd);
    return nodeIO.close(fd);
  }
  write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return nodeIO.write(fd, buf, offset, length, position);
  }
  read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return nodeIO.read(fd, buf, offset, length, position);
  }
  fdatasync(fd: number): Promise<void> {
    return nodeIO.fdatasync(fd);
  }
  ftruncate(fd: number, length: number): Promise<void> {
    return nodeIO.ftruncate(fd, length);
  }
  allocate(fd: number, position: number, length: number): Promise<void> {
    return nodeIO.allocate!(fd, position, length);
  }
  fsize(fd: number): Promise<number> {
    return nodeIO.fsize(fd);
  }
  size(path: string): Promise<number> {
    return nodeIO.size(path);
  }
  readFile(path: string): Promise<Buffer> {
    return nodeIO.readFile(path);
  }
  readdir(path: string): Promise<string[]> {
    return nodeIO.readdir(path);
  }
  mkdir(path: string): Promise<void> {
    return nodeIO.mkdir(path);
  }
  rename(from: string, to: string): Promise<void> {
    return nodeIO.rename(from, to);
  }
  unlink(path: string): Promise<void> {
    return nodeIO.unlink(path);
  }
  rmdir(path: string): Promise<void> {
    return nodeIO.rmdir(path);
  }
  fsyncDir(path: string): Promise<void> {
    return nodeIO.fsyncDir(path);
  }
}
