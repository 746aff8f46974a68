/** What the broker needs to report; Nest's Logger and console both fit. */
export interface BrokerLogger {
  log?(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const consoleLogger: BrokerLogger = {
  log: m => console.log(`[logbus] ${m}`),
  warn: m => console.warn(`[logbus] ${m}`),
  error: m => console.error(`[logbus] ${m}`),
};

/**
 * One warning per key per interval, with the number suppressed in between,
 * so a dropping subscriber cannot flood the log.
 */
export class RateLimitedWarnings {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  private static readonly MAX_KEYS = 10_000;

  constructor(
    private readonly logger: BrokerLogger,
    private readonly intervalMs = 5000,
  ) {}

  warn(key: string, message: () => string): void {
    const now = Date.now();
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    if (!seen && this.last.size >= RateLimitedWarnings.MAX_KEYS) this.last.delete(this.last.keys().next().value as string);
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger.warn(message() + (suppressed ? ` (${suppressed} similar warnings suppressed)` : ''));
  }
}
