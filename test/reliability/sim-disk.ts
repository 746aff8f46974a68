import { dirname, basename, resolve } from 'node:path';
import type { StoreIO } from '../../lib/store/io.js';

/**
 * A simulated disk for power-loss testing: file contents live in memory, with
 * what was written kept apart from what was fdatasync'd, and directory entries
 * kept apart from what fsyncDir made durable.
 *
 * crash() returns the state a power loss could leave, chosen at random among
 * the legal outcomes:
 *  - every write since the file's last fdatasync is independently kept whole,
 *    dropped, or torn at a random byte (pages reach the platter partially);
 *    a kept write past a dropped one leaves a hole of zeros, as a persisted
 *    file size with unpersisted data does; an unsynced truncate is kept or not;
 *  - a directory keeps a random prefix of its entry changes (create, rename,
 *    unlink) since its last fsyncDir (a metadata journal commits in order).
 * After a crash the old IO handles fail every call with EIO: the dead process
 * can no longer touch the disk.
 */

type Rng = () => number;

interface FileNode {
  kind: 'file';
  data: Buffer;
  size: number;
  /** Content as of the last fdatasync. */
  synced: Buffer;
  /** Changes since the last fdatasync, in order. */
  pending: ({ op: 'write'; pos: number; bytes: Buffer } | { op: 'truncate'; length: number })[];
}

interface DirNode {
  kind: 'dir';
  entries: Map<string, Node>;
  durable: Map<string, Node>;
  pending: { name: string; node: Node | null }[];
}

type Node = FileNode | DirNode;

const fail = (code: string, what: string) => Object.assign(new Error(`${code}: ${what}`), { code });

function newFile(): FileNode {
  return { kind: 'file', data: Buffer.alloc(0), size: 0, synced: Buffer.alloc(0), pending: [] };
}
function newDir(): DirNode {
  return { kind: 'dir', entries: new Map(), durable: new Map(), pending: [] };
}

export interface SimCounters {
  writes: number;
  syncs: number;
  dirSyncs: number;
  renames: number;
  unlinks: number;
  opens: number;
}

export class SimDisk {
  private root: DirNode = newDir();
  private generation = 0;
  crashes = 0;
  readonly counters: SimCounters = { writes: 0, syncs: 0, dirSyncs: 0, renames: 0, unlinks: 0, opens: 0 };
  /** Called before every mutating operation (tests use it to pick the crash point). */
  onOp: ((kind: string, path: string) => void) | undefined;

  constructor(private readonly rng: Rng) {}

  /** Makes `path` and its ancestors exist durably (the pre-existing data directory). */
  mkdirDurable(path: string): void {
    let d = this.root;
    for (const part of parts(path)) {
      let n = d.entries.get(part);
      if (!n) {
        n = newDir();
        d.entries.set(part, n);
        d.durable.set(part, n);
      }
      if (n.kind !== 'dir') throw fail('ENOTDIR', path);
      d = n;
    }
  }

  /** A fresh StoreIO bound to the current power cycle. */
  io(): SimIO {
    return new SimIO(this, this.generation);
  }

  /** Power loss: keeps only what a real disk could have kept, at random. Old IO handles die. */
  crash(): void {
    this.generation++;
    this.crashes++;
    const seen = new Set<Node>();
    const settleDir = (d: DirNode): void => {
      if (seen.has(d)) return;
      seen.add(d);
      const keep = this.rng() < 0.5 ? 0 : Math.floor(this.rng() * (d.pending.length + 1));
      const entries = new Map(d.durable);
      for (const p of d.pending.slice(0, keep)) {
        if (p.node) entries.set(p.name, p.node);
        else entries.delete(p.name);
      }
      d.entries = entries;
      d.durable = new Map(entries);
      d.pending = [];
      for (const n of entries.values()) {
        if (n.kind === 'dir') settleDir(n);
        else settleFile(n);
      }
    };
    const settleFile = (f: FileNode): void => {
      if (seen.has(f)) return;
      seen.add(f);
      let data: Buffer = Buffer.from(f.synced);
      for (const p of f.pending) {
        const r = this.rng();
        if (p.op === 'truncate') {
          if (r < 0.5) data = resize(data, p.length);
          continue;
        }
        if (r < 0.3) continue; // dropped
        const n = r < 0.65 ? p.bytes.length : Math.floor(this.rng() * (p.bytes.length + 1)); // whole or torn
        if (n === 0) continue;
        if (data.length < p.pos + n) data = resize(data, p.pos + n);
        p.bytes.copy(data, p.pos, 0, n);
      }
      f.data = data;
      f.size = data.length;
      f.synced = Buffer.from(data);
      f.pending = [];
    };
    settleDir(this.root);
  }

  // ------------------------------------------------------------ internals used by SimIO

  checkGen(gen: number, what: string): void {
    if (gen !== this.generation) throw fail('EIO', `${what}: the disk lost power`);
  }

  lookup(path: string): Node | undefined {
    let n: Node = this.root;
    for (const part of parts(path)) {
      if (n.kind !== 'dir') return undefined;
      const c = n.entries.get(part);
      if (!c) return undefined;
      n = c;
    }
    return n;
  }

  parentOf(path: string): { dir: DirNode; name: string } {
    const d = this.lookup(dirname(resolve(path)));
    if (!d) throw fail('ENOENT', path);
    if (d.kind !== 'dir') throw fail('ENOTDIR', path);
    return { dir: d, name: basename(resolve(path)) };
  }

  setEntry(dir: DirNode, name: string, node: Node | null): void {
    if (node) dir.entries.set(name, node);
    else dir.entries.delete(name);
    dir.pending.push({ name, node });
  }

  newFile = newFile;
  newDir = newDir;
}

function parts(path: string): string[] {
  return resolve(path).split('/').filter(Boolean);
}

function resize(b: Buffer, length: number): Buffer {
  if (b.length === length) return b;
  if (b.length > length) return Buffer.from(b.subarray(0, length));
  const out = Buffer.alloc(length);
  b.copy(out);
  return out;
}

export class SimIO implements StoreIO {
  private readonly fds = new Map<number, { node: FileNode; path: string; writable: boolean }>();
  private nextFd = 3;

  constructor(
    private readonly disk: SimDisk,
    private readonly gen: number,
  ) {}

  private file(fd: number, what: string): { node: FileNode; path: string; writable: boolean } {
    this.disk.checkGen(this.gen, what);
    const f = this.fds.get(fd);
    if (!f) throw fail('EBADF', `${what}: fd ${fd}`);
    return f;
  }

  private op(kind: string, path: string): void {
    this.disk.checkGen(this.gen, `${kind} ${path}`);
    this.disk.onOp?.(kind, path);
    this.disk.checkGen(this.gen, `${kind} ${path}`);
  }

  async open(path: string, flags: string): Promise<number> {
    this.op('open', path);
    this.disk.counters.opens++;
    let node = this.disk.lookup(path);
    if (node?.kind === 'dir') throw fail('EISDIR', path);
    const create = flags.startsWith('w') || flags.startsWith('a');
    if (flags.includes('x') && node) throw fail('EEXIST', path);
    if (!node) {
      if (!create) throw fail('ENOENT', path);
      const { dir, name } = this.disk.parentOf(path);
      node = this.disk.newFile();
      this.disk.setEntry(dir, name, node);
    } else if (flags.startsWith('w')) {
      truncate(node, 0);
    }
    const fd = this.nextFd++;
    this.fds.set(fd, { node, path, writable: flags !== 'r' });
    return fd;
  }

  async close(fd: number): Promise<void> {
    this.file(fd, 'close');
    this.fds.delete(fd);
  }

  async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const f = this.file(fd, 'write');
    this.op('write', f.path);
    if (!f.writable) throw fail('EBADF', `write to read-only ${f.path}`);
    this.disk.counters.writes++;
    const bytes = Buffer.from(buf.subarray(offset, offset + length));
    const n = f.node;
    if (n.data.length < position + length) n.data = resize(n.data, Math.max(position + length, n.data.length * 2));
    bytes.copy(n.data, position);
    n.size = Math.max(n.size, position + length);
    n.pending.push({ op: 'write', pos: position, bytes });
    return length;
  }

  /** Zeros written like any write: pending (droppable, tearable) until fdatasync. */
  async allocate(fd: number, position: number, length: number): Promise<void> {
    await this.write(fd, Buffer.alloc(length), 0, length, position);
  }

  async read(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const f = this.file(fd, 'read');
    const n = Math.max(0, Math.min(length, f.node.size - position));
    f.node.data.copy(buf, offset, position, position + n);
    return n;
  }

  async fdatasync(fd: number): Promise<void> {
    const f = this.file(fd, 'fdatasync');
    this.op('fdatasync', f.path);
    this.disk.counters.syncs++;
    f.node.synced = Buffer.from(f.node.data.subarray(0, f.node.size));
    f.node.pending = [];
  }

  async ftruncate(fd: number, length: number): Promise<void> {
    const f = this.file(fd, 'ftruncate');
    this.op('ftruncate', f.path);
    truncate(f.node, length);
  }

  async fsize(fd: number): Promise<number> {
    return this.file(fd, 'fstat').node.size;
  }

  async size(path: string): Promise<number> {
    this.disk.checkGen(this.gen, `stat ${path}`);
    const n = this.disk.lookup(path);
    if (!n) return -1;
    return n.kind === 'file' ? n.size : 4096;
  }

  async readFile(path: string): Promise<Buffer> {
    this.disk.checkGen(this.gen, `readFile ${path}`);
    const n = this.disk.lookup(path);
    if (!n) throw fail('ENOENT', path);
    if (n.kind !== 'file') throw fail('EISDIR', path);
    return Buffer.from(n.data.subarray(0, n.size));
  }

  async readdir(path: string): Promise<string[]> {
    this.disk.checkGen(this.gen, `readdir ${path}`);
    const n = this.disk.lookup(path);
    if (!n) throw fail('ENOENT', path);
    if (n.kind !== 'dir') throw fail('ENOTDIR', path);
    return [...n.entries.keys()].sort();
  }

  async mkdir(path: string): Promise<void> {
    this.op('mkdir', path);
    let d = this.disk.lookup('/') as DirNode;
    for (const part of parts(path)) {
      let n = d.entries.get(part);
      if (!n) {
        n = this.disk.newDir();
        this.disk.setEntry(d, part, n);
      }
      if (n.kind !== 'dir') throw fail('ENOTDIR', path);
      d = n;
    }
  }

  async rename(from: string, to: string): Promise<void> {
    this.op('rename', to);
    this.disk.counters.renames++;
    const n = this.disk.lookup(from);
    if (!n) throw fail('ENOENT', from);
    const a = this.disk.parentOf(from);
    const b = this.disk.parentOf(to);
    this.disk.setEntry(a.dir, a.name, null);
    this.disk.setEntry(b.dir, b.name, n);
  }

  async unlink(path: string): Promise<void> {
    this.op('unlink', path);
    this.disk.counters.unlinks++;
    const n = this.disk.lookup(path);
    if (!n) throw fail('ENOENT', path);
    if (n.kind === 'dir') throw fail('EISDIR', path);
    const { dir, name } = this.disk.parentOf(path);
    this.disk.setEntry(dir, name, null);
  }

  async rmdir(path: string): Promise<void> {
    this.op('rmdir', path);
    const n = this.disk.lookup(path);
    if (!n) return;
    // rm -r: children first, then the directory's own entry.
    const rm = (d: DirNode) => {
      for (const [name, c] of [...d.entries]) {
        if (c.kind === 'dir') rm(c);
        this.disk.setEntry(d, name, null);
      }
    };
    if (n.kind === 'dir') rm(n);
    const { dir, name } = this.disk.parentOf(path);
    this.disk.setEntry(dir, name, null);
  }

  async fsyncDir(path: string): Promise<void> {
    this.op('fsyncDir', path);
    this.disk.counters.dirSyncs++;
    const n = this.disk.lookup(path);
    if (!n) throw fail('ENOENT', path);
    if (n.kind !== 'dir') throw fail('ENOTDIR', path);
    n.durable = new Map(n.entries);
    n.pending = [];
  }
}

function truncate(n: FileNode, length: number): void {
  if (length < n.size) n.data.fill(0, length, n.size);
  n.size = length;
  if (n.data.length < length) n.data = resize(n.data, length);
  n.pending.push({ op: 'truncate', length });
}

/** mulberry32: small, fast, seedable. */
export function prng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
