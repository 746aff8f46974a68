import type { BusStats } from '../connection/types.js';

/** Broker-wide counters behind stats(). Plain fields: the hot path only increments. */
export class BrokerStats {
  published = 0;
  delivered = 0;
  redelivered = 0;
  deadLettered = 0;
  /** subscriber id → dropped count; bounded, oldest subscriber forgotten first. */
  private readonly dropped = new Map<string, number>();
  private static readonly MAX_DROP_KEYS = 10_000;

  drop(subscriberId: string): void {
    const n = this.dropped.get(subscriberId);
    if (n === undefined && this.dropped.size >= BrokerStats.MAX_DROP_KEYS) {
      this.dropped.delete(this.dropped.keys().next().value as string);
    }
    this.dropped.set(subscriberId, (n ?? 0) + 1);
  }

  snapshot(): BusStats {
    return {
      published: this.published,
      delivered: this.delivered,
      dropped: Object.fromEntries(this.dropped),
      redelivered: this.redelivered,
      deadLettered: this.deadLettered,
    };
  }
}
