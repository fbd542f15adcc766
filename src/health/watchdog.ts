import { CdcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { HealthState } from './health-state.ts';

/** One look at a process's work: is any waiting, and where has it got to. */
export interface WatchdogSample {
  /** True when there is something to do (consumer lag > 0; WAL beyond the slot's confirmed position). */
  work: boolean;
  /**
   * Any value that changes when the process moves forward (summed stored
   * offsets; confirmed LSN and acknowledged events). Compared by value only.
   */
  progress: bigint | number | string;
  /** How much work, for the log and /readyz (`lag 1234`, `9.1 MiB of WAL unconfirmed`). */
  detail?: string;
}

export type WatchdogState = 'idle' | 'progressing' | 'waiting' | 'stalled' | 'exit';

export interface WatchdogVerdict {
  state: WatchdogState;
  /** How long there has been work and no progress (0 unless waiting, stalled or exit). */
  stalledMs: number;
}

export interface WatchdogLimits {
  /** Work and no progress for this long: unhealthy (WATCHDOG_UNHEALTHY_MS). */
  unhealthyMs: number;
  /** Work and no progress for this long: exit non-zero (WATCHDOG_EXIT_MS); 0 never exits. */
  exitMs: number;
}

/**
 * The progress rule, as a pure state machine over samples and a clock:
 *
 * - the stall clock starts at the first sample with work (after one
 *   without), and is reset by any sample without work or with changed
 *   progress;
 * - work and no progress for `unhealthyMs` → `stalled` (report unhealthy);
 *   for `exitMs` → `exit` (exit non-zero so a supervisor restarts it);
 * - a failed sample (the probe could not look) keeps the last known work
 *   flag and no progress: a process that cannot even see its own position
 *   while it had work is as stuck as one that does not move.
 *
 * Idle is never a stall: with no work, nothing is expected to move.
 */
export class ProgressWatchdog {
  private last: string | undefined;
  private lastWork = false;
  private since: number;

  constructor(readonly limits: WatchdogLimits, private readonly now: () => number = Date.now) {
    this.since = now();
  }

  observe(sample: WatchdogSample): WatchdogVerdict {
    const p = String(sample.progress);
    const t = this.now();
    const moved = this.last !== undefined && p !== this.last;
    const workAppeared = sample.work && !this.lastWork;
    this.last = p;
    this.lastWork = sample.work;
    if (!sample.work || moved) {
      this.since = t;
      return { state: sample.work ? 'progressing' : 'idle', stalledMs: 0 };
    }
    if (workAppeared) this.since = t;
    return this.verdict(t);
  }

  /** The probe failed: judge on the last known work flag, as if nothing moved. */
  observeFailure(): WatchdogVerdict {
    const t = this.now();
    if (!this.lastWork) {
      this.since = t;
      return { state: 'idle', stalledMs: 0 };
    }
    return this.verdict(t);
  }

  private verdict(t: number): WatchdogVerdict {
    const stalledMs = t - this.since;
    const { unhealthyMs, exitMs } = this.limits;
    if (exitMs > 0 && stalledMs >= exitMs) return { state: 'exit', stalledMs };
    if (stalledMs >= unhealthyMs) return { state: 'stalled', stalledMs };
    return { state: 'waiting', stalledMs };
  }
}

/** The watchdog gave up on a process: it had work and made no progress for WATCHDOG_EXIT_MS. */
export class StalledError extends CdcError {
  readonly code = 'STALLED' as const;
  readonly retriable = false;
}

export interface WatchdogRunnerOptions {
  watchdog: ProgressWatchdog;
  /** Looks at the process's work and position (and may update metrics on the way). */
  sample: () => Promise<WatchdogSample>;
  intervalMs: number;
  health: HealthState;
  log: Logger;
  /** Called once when the exit limit is reached; the process must exit non-zero. */
  onExit: (err: StalledError) => void;
}

/**
 * Drives a ProgressWatchdog: samples every `intervalMs`, keeps the
 * `watchdog` health condition and calls `onExit` once at the exit limit.
 * A failed sample also marks the `probe` condition unhealthy.
 */
export class WatchdogRunner {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private exited = false;
  private lastDetail = '';
  last: WatchdogVerdict = { state: 'idle', stalledMs: 0 };

  constructor(private readonly o: WatchdogRunnerOptions) {}

  start(): void {
    if (this.timer) return;
    this.o.health.initCondition('watchdog', { healthy: true, detail: 'no stall' });
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  /** One sample and verdict; exposed so tests and start-up can run it without waiting for the timer. */
  async tick(): Promise<WatchdogVerdict> {
    if (this.running) return this.last;
    this.running = true;
    try {
      let verdict: WatchdogVerdict;
      try {
        const s = await this.o.sample();
        this.o.health.setCondition('probe', { healthy: true });
        this.lastDetail = s.detail ?? '';
        verdict = this.o.watchdog.observe(s);
      } catch (err) {
        this.o.health.setCondition('probe', { healthy: false, detail: `cannot read progress: ${(err as Error).message}` });
        verdict = this.o.watchdog.observeFailure();
      }
      this.apply(verdict);
      return verdict;
    } finally {
      this.running = false;
    }
  }

  private apply(v: WatchdogVerdict): void {
    this.last = v;
    const { unhealthyMs, exitMs } = this.o.watchdog.limits;
    const work = this.lastDetail ? ` (${this.lastDetail})` : '';
    if (v.state === 'stalled' || v.state === 'exit') {
      const detail = `no progress for ${Math.round(v.stalledMs / 1000)} s with work pending${work}; unhealthy after ${unhealthyMs / 1000} s${exitMs > 0 ? `, exit after ${exitMs / 1000} s` : ''}`;
      this.o.health.setCondition('watchdog', { healthy: false, detail });
    } else {
      this.o.health.setCondition('watchdog', { healthy: true, detail: v.state === 'waiting' ? `no progress for ${Math.round(v.stalledMs / 1000)} s${work}` : v.state });
    }
    if (v.state === 'exit' && !this.exited) {
      this.exited = true;
      const err = new StalledError(`watchdog: no progress for ${Math.round(v.stalledMs / 1000)} s with work pending${work} (WATCHDOG_EXIT_MS=${exitMs})`);
      this.o.log.fatal({ err: err.message, stalledMs: v.stalledMs }, 'watchdog: stalled; exiting so the supervisor restarts the process');
      this.o.onExit(err);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
