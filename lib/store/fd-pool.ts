/**
 * A store-wide cap on the file descriptors its segment files hold: 10,000
 * durable topics must not need 20,000 fds. Every open of a segment or index
 * file first reserves room here; long-lived holders (a segment's log + index
 * fds) stay listed oldest-use first, and when a reservation does not fit, the
 * least recently used holders that allow it are asked to close their files
 * (they reopen on demand). When nothing can be closed, reservations wait in
 * order until fds are released or a holder becomes idle.
 *
 * Deadlock-free as long as no one waits for a reservation while holding
 * another that only its own progress would release (file-topic-log.ts and
 * segment.ts reserve one step at a time).
 */

export const DEFAULT_MAX_OPEN_FILES = 1024;
/** An active segment's two files plus a reader's one, with room to spare. */
export const MIN_MAX_OPEN_FILES = 4;

/** Something keeping pooled fds open that the pool may ask to close them. */
export interface FdHolder {
  /** False while its files are in use or must stay open (I/O in flight, unsynced writes). */
  canClose(): boolean;
  /** Closes its files; never rejects. The pool then returns its fds. */
  closeFiles(): Promise<void>;
}

export class FdPool {
  /** fds open or reserved. */
  private used = 0;
  /** Of `used`: being closed on the pool's request. */
  private freeing = 0;
  /** Oldest use first (Map keeps insertion order). */
  private readonly holders = new Map<object, { n: number; h: FdHolder }>();
  private readonly waiting: Array<{ n: number; resolve: () => void }> = [];

  constructor(readonly limit: number) {}

  /** fds open or reserved right now. */
  get inUse(): number {
    return this.used;
  }

  /** Waits until n more fds fit, closing idle holders' files to make room. */
  reserve(n: number): Promise<void> {
    if (this.waiting.length === 0 && this.used + n <= this.limit) {
      this.used += n;
      return Promise.resolve();
    }
    return new Promise(resolve => {
      this.waiting.push({ n, resolve });
      this.pump();
    });
  }

  /** Returns fds reserved earlier (closed, or never opened). */
  release(n: number): void {
    this.used -= n;
    this.pump();
  }

  /** Reserves n fds around fn (which opens and closes its own files). */
  async using<T>(n: number, fn: () => Promise<T>): Promise<T> {
    await this.reserve(n);
    try {
      return await fn();
    } finally {
      this.release(n);
    }
  }

  /** `key`'s n reserved fds are open and stay so until forget(), or until the pool asks h to close them. */
  hold(key: object, n: number, h: FdHolder): void {
    this.holders.delete(key);
    this.holders.set(key, { n, h });
    // A reservation may be waiting for a holder it can close.
    this.idle();
  }

  /** Marks a holder as just used. */
  touch(key: object): void {
    const e = this.holders.get(key);
    if (!e) return;
    this.holders.delete(key);
    this.holders.set(key, e);
  }

  /** The holder closes its files itself from now on (and releases them). */
  forget(key: object): void {
    this.holders.delete(key);
  }

  /** A holder may have become closable: waiting reservations get another chance. */
  idle(): void {
    if (this.waiting.length) this.pump();
  }

  private pump(): void {
    while (this.waiting.length) {
      const w = this.waiting[0];
      if (this.used + w.n <= this.limit) {
        this.waiting.shift();
        this.used += w.n;
        w.resolve();
        continue;
      }
      // Closes under way will make room; their completion pumps again.
      if (this.used - this.freeing + w.n <= this.limit) return;
      if (!this.closeOne()) return;
    }
  }

  private closeOne(): boolean {
    for (const [key, e] of this.holders) {
      if (!e.h.canClose()) continue;
      this.holders.delete(key);
      this.freeing += e.n;
      void e.h.closeFiles().finally(() => {
        this.freeing -= e.n;
        this.used -= e.n;
        this.pump();
      });
      return true;
    }
    return false;
  }
}
