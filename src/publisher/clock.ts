/**
 * Wall-clock time in nanoseconds for the envelope's processing time
 * (`ts_ms` / `ts_us` / `ts_ns`). `Date.now()` has milliseconds only, which
 * made every `ts_us` end in 000; this adds the monotonic clock's sub-
 * millisecond part to a wall-clock anchor, re-anchored once a second so NTP
 * steps show up. Debezium takes `Instant.now()`, as precise on Linux JVMs.
 */
export class WallClock {
  private anchorNs = 0n;
  private anchorHr = 0n;
  private last = 0n;

  constructor(private readonly wallMs: () => number = Date.now, private readonly hrNs: () => bigint = process.hrtime.bigint) {
    this.reanchor();
  }

  private reanchor(): void {
    this.anchorHr = this.hrNs();
    this.anchorNs = BigInt(this.wallMs()) * 1_000_000n;
  }

  nowNs(): bigint {
    let elapsed = this.hrNs() - this.anchorHr;
    if (elapsed > 1_000_000_000n || elapsed < 0n) {
      this.reanchor();
      elapsed = 0n;
    }
    let ns = this.anchorNs + elapsed;
    // Never backwards within the process: a re-anchor may land below the last value.
    if (ns < this.last) ns = this.last;
    this.last = ns;
    return ns;
  }
}
