/**
 * The durable log store.
 *
 * On disk, under dataDir:
 *   LOCK                          owner pid; a live owner makes open fail with LOCKED
 *   group-offsets-{0,1}.ckpt      committed group positions, two alternating CRC'd copies
 *   topic-configs-{0,1}.ckpt      saved topic configs, same scheme
 *   topics/<topic>/<base>.log     segments named by base offset (20 digits), record
 *                                 batches with a CRC-32 over length + content (batch-format.ts)
 *   topics/<topic>/<base>.index   sparse offset + time index, derived, rebuilt when
 *                                 damaged (segment-index.ts)
 *   With fsync 'always' the active segment's file runs ahead of its last batch
 *   with synced zeros (preallocated, so a commit's fdatasync need not persist a
 *   new file size); the file is cut to its last batch when the segment is
 *   sealed, on clean close, and by recovery after a crash.
 *
 * Recovery and damage policy (file-topic-log.ts): a torn tail of the active
 * segment is cut at the last whole batch; damage in a sealed segment is logged
 * at open when seen and reported by reads as CORRUPT (file, byte, offset to
 * skip to), never served and never cut.
 */
import { FileStore, type FileStoreOptions } from './file-store.js';
import { MemoryStore } from './memory-store.js';
import type { LogStore } from './types.js';

export { FileStore, type FileStoreOptions } from './file-store.js';
export { FileTopicLog } from './file-topic-log.js';
export { MemoryStore, MemoryTopicLog } from './memory-store.js';
export { type StoreIO, nodeIO } from './io.js';
export type * from './types.js';

/** The in-memory twin for dataDir ':memory:', else the file store (which takes the dataDir lock). */
export async function openStore(opts: FileStoreOptions): Promise<LogStore> {
  if (opts.dataDir === ':memory:') return new MemoryStore();
  return FileStore.open(opts);
}
