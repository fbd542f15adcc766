/**
 * Wall-clock time in nanoseconds for the envelope's processing time
 * (`ts_ms` / `ts_us` / `ts_ns`). `Date.now()` has milliseconds only, which
 * made every `ts_us` end in 000; this adds the monotonic clock's sub-
 * millisecond part to a wall-clock anchor, re-anchored once a second so NTP
 * steps show up. Debezium takes `Instant.now()`, as precise on Linux JVMs.
 *
 * A reading is kept as two numbers, microseconds since the epoch (exact: far
 * below 2^53) and the nanoseconds past that microsecond, because the encoder
 * takes one per event and BigInt arithmetic on a full nanosecond count showed
 * in its profile.
 */
export class WallClock {
  private anchorMs = 0;
  private anchorHr = 0n;
  private lastUs = 0;
  private lastNs = 0;
  /** The last reading (`read()`): microseconds since the epoch ... */
  us = 0;
  /** ... and nanoseconds past that microsecond, 0..999. */
  subUsNs = 0;

  constructor(private readonly wallMs: () => number = Date.now, private readonly hrNs: () => bigint = process.hrtime.bigint) {
    this.reanchor();
  }

  private reanchor(): void {
    this.anchorHr = this.hrNs();
    this.anchorMs = this.wallMs();
  }

  /** Takes a reading into `us` / `subUsNs`. */
  read(): void {
    let elapsed = Number(this.hrNs() - this.anchorHr);
    if (elapsed > 1_000_000_000 || elapsed < 0) {
      this.reanchor();
      elapsed = 0;
    }
    const e = Math.floor(elapsed / 1000);
    let us = this.anchorMs * 1000 + e;
    let ns = elapsed - e * 1000;
    // Never backwards within the process: a re-anchor may land below the last value.
    if (us < this.lastUs || (us === this.lastUs && ns < this.lastNs)) { us = this.lastUs; ns = this.lastNs; }
    this.lastUs = us;
    this.lastNs = ns;
    this.us = us;
    this.subUsNs = ns;
  }

  nowNs(): bigint {
    this.read();
    return BigInt(this.us) * 1000n + BigInt(this.subUsNs);
  }
}
