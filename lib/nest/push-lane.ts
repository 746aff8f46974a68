import type { Delivery } from '../connection/types.js';

/**
 * Handlers of one push subscription running at once. Without a cap, a burst
 * starts every delivery's handler together (up to the subscriber buffer,
 * tens of thousands), and the garbage collector then costs more than the
 * handlers. Waiting deliveries stay counted in the broker's bounded buffer
 * until done(), so this queue is bounded by it too.
 */
export const PUSH_CONCURRENCY = 256;

export class PushLane {
  running = 0;
  private waiting: Delivery[] = [];
  private head = 0;

  /** true: run it now (a slot is taken); false: queued for later. */
  admit(d: Delivery): boolean {
    if (this.running < PUSH_CONCURRENCY) {
      this.running++;
      return true;
    }
    this.waiting.push(d);
    return false;
  }

  /** The next queued delivery for a finished slot; the slot is released when none is left. */
  next(): Delivery | undefined {
    if (this.head < this.waiting.length) {
      const d = this.waiting[this.head];
      this.waiting[this.head++] = undefined!;
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting = this.waiting.slice(this.head);
        this.head = 0;
      }
      return d;
    }
    this.running--;
    return undefined;
  }

  /** Everything still queued (close(): done without running, push is at-most-once). */
  takeAll(): Delivery[] {
    const rest = this.waiting.slice(this.head);
    this.waiting = [];
    this.head = 0;
    return rest;
  }
}
