/**
 * Batches frames for one socket: everything queued in one turn of the event
 * loop goes out in one write (one syscall), and the socket's writable state
 * is respected: while the kernel buffer is full the owner is told to stop
 * producing (onBlocked(true)); onBlocked(false) comes on 'drain', and after
 * any write the socket took without blocking.
 */
import type { Socket } from 'node:net';

export class Outbox {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private blocked = false;
  /** Called just before a flush, so callers can add their own batches (acks, deliveries). */
  beforeFlush: (() => void) | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly onBlocked: (blocked: boolean) => void,
  ) {
    socket.on('drain', () => {
      if (this.blocked) {
        this.blocked = false;
        this.onBlocked(false);
      }
    });
  }

  /** Bytes waiting here plus bytes the socket has not yet handed to the kernel. */
  get pendingBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  get isBlocked(): boolean {
    return this.blocked;
  }

  send(frame: Buffer): void {
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    this.schedule();
  }

  schedule(): void {
    if (this.scheduled === undefined) this.scheduled = setImmediate(() => this.flush());
  }

  flush(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    this.beforeFlush?.();
    if (this.queue.length === 0 || this.socket.destroyed) {
      this.queue = [];
      this.queuedBytes = 0;
      return;
    }
    const data = this.queue.length === 1 ? this.queue[0] : Buffer.concat(this.queue, this.queuedBytes);
    this.queue = [];
    this.queuedBytes = 0;
    const ok = this.socket.write(data);
    if (!ok && !this.blocked) {
      this.blocked = true;
      this.onBlocked(true);
    } else if (ok && !this.blocked) {
      // the kernel took it all: whoever waits for room may go on (there will be no 'drain')
      this.onBlocked(false);
    }
  }

  /** Drops anything queued (the connection is gone). */
  clear(): void {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.queue = [];
    this.queuedBytes = 0;
  }
}
