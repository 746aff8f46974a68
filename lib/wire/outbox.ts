/**
 * Batches frames for one socket: everything queued in one turn of the event
 * loop goes out in one write (one syscall) at setImmediate. An answer or a
 * request (sendSoon) instead leaves at the end of the current job, taking
 * whatever is queued with it: the peer gets it before the work it unblocked
 * runs here (a publisher starts its next window while we run its handlers),
 * and at most one such early write happens per turn, plus one for every
 * SOON_CHUNK_FRAMES frames queued in between. The socket's writable state
 * is respected: while the kernel buffer is full the owner is told to stop
 * producing (onBlocked(true)); onBlocked(false) comes on 'drain', and after
 * any write the socket took without blocking.
 */
import type { Socket } from 'node:net';

/**
 * A burst of answers or requests leaves in writes of this many frames: the peer
 * starts on the first ones while we produce the rest, so both ends work at once
 * (RPC with 100 in flight: 1.6x the requests/s of one write per burst).
 */
const SOON_CHUNK_FRAMES = 32;

export class Outbox {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private scheduled: NodeJS.Immediate | undefined;
  /** An early write is queued or done in this turn. */
  private early = false;
  private blocked = false;
  private readonly onImmediate = (): void => {
    this.scheduled = undefined;
    this.early = false;
    this.write();
  };
  private readonly onMicrotask = (): void => this.write();
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

  /** Queues a frame for this turn's batched write. */
  send(frame: Buffer): void {
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    this.schedule();
  }

  /** Queues a frame someone waits for (an answer, a request): out at the end of the current job. */
  sendSoon(frame: Buffer): void {
    this.send(frame);
    if (this.queue.length >= SOON_CHUNK_FRAMES) {
      this.write();
      return;
    }
    if (!this.early) {
      this.early = true;
      queueMicrotask(this.onMicrotask);
    }
  }

  schedule(): void {
    if (this.scheduled === undefined) this.scheduled = setImmediate(this.onImmediate);
  }

  flush(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    // no immediate is left to end the turn: the next answer may go early again
    this.early = false;
    this.write();
  }

  private write(): void {
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
