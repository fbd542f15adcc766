import type { Logger } from '../logger.ts';

/**
 * Where a consumer's wall time goes, per named stage (fetch wait, decode,
 * each part of the transaction, Redis flush, Kafka commit), summed over a
 * window and logged at info once per window. It exists because the loop's
 * cost is spread over several servers and a CPU profile of the Node process
 * only shows the part spent in Node. Cheap enough to stay on: one
 * `performance.now()` per stage.
 */
export class StageTimer {
  private totals = new Map<string, { ms: number; n: number }>();
  private windowStart: number;
  private messages = 0;
  private batches = 0;

  constructor(
    private readonly log: Logger | undefined,
    private readonly name: string,
    private readonly windowMs = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.windowStart = now();
  }

  add(stage: string, ms: number): void {
    const t = this.totals.get(stage);
    if (t) { t.ms += ms; t.n += 1; } else this.totals.set(stage, { ms, n: 1 });
  }

  /** Runs `fn`, adding its wall time to `stage` (also when it throws). */
  async time<T>(stage: string, fn: () => Promise<T>): Promise<T> {
    const t0 = this.now();
    try {
      return await fn();
    } finally {
      this.add(stage, this.now() - t0);
    }
  }

  /** A stopwatch: each call adds the time since the previous call (or creation) to the named stage. */
  laps(): (stage: string) => void {
    let t = this.now();
    return (stage) => {
      const n = this.now();
      this.add(stage, n - t);
      t = n;
    };
  }

  /** Counts a processed batch; logs and resets the window when it is over. */
  batchDone(messages: number): void {
    this.messages += messages;
    this.batches += 1;
    const elapsed = this.now() - this.windowStart;
    if (elapsed >= this.windowMs) this.flush(elapsed);
  }

  snapshot(): { stages: Record<string, { ms: number; n: number; share: number }>; messages: number; batches: number; windowMs: number } {
    const windowMs = this.now() - this.windowStart;
    const stages: Record<string, { ms: number; n: number; share: number }> = {};
    for (const [k, v] of this.totals) stages[k] = { ms: Math.round(v.ms), n: v.n, share: Math.round((v.ms / windowMs) * 1000) / 1000 };
    return { stages, messages: this.messages, batches: this.batches, windowMs: Math.round(windowMs) };
  }

  private flush(elapsed: number): void {
    const s = this.snapshot();
    this.log?.info({ timer: this.name, ...s, messagesPerSecond: Math.round((s.messages / elapsed) * 1000) }, 'stage timings');
    this.totals = new Map();
    this.messages = 0;
    this.batches = 0;
    this.windowStart = this.now();
  }
}
