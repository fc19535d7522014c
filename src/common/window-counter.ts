/**
 * Counts events per key in fixed windows (in memory, per instance). Small and allocation-light:
 * the whole map is dropped when the window turns over.
 */
export class WindowCounter {
  private windowStart = Date.now();
  private counts = new Map<string, number>();

  constructor(private readonly windowMs: number) {}

  private roll(now: number): void {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now - ((now - this.windowStart) % this.windowMs);
      this.counts = new Map();
    }
  }

  count(key: string): number {
    this.roll(Date.now());
    return this.counts.get(key) ?? 0;
  }

  /** Adds one and returns the new count. */
  hit(key: string): number {
    this.roll(Date.now());
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    return n;
  }

  /** Seconds until the current window ends (for Retry-After). */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil((this.windowStart + this.windowMs - Date.now()) / 1000));
  }
}
