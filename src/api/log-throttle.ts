/**
 * At most one log line per key per interval. During an outage every request
 * fails the same way; at thousands of requests a second, one line each would
 * bury everything else in the log and cost more than the requests. The
 * first failure logs at once; later ones report how many were held back.
 */
export class LogThrottle {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Undefined: stay quiet. A number: log now, mentioning that many suppressed since the last line. */
  admit(key: string): number | undefined {
    const t = this.now();
    const entry = this.last.get(key);
    if (entry && t - entry.at < this.intervalMs) {
      entry.suppressed++;
      return undefined;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(key, { at: t, suppressed: 0 });
    return suppressed;
  }
}
