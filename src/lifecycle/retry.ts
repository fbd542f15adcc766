import { int, type Env } from '../config/env.ts';
import { StartupTimeoutError, type CdcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { sleep } from '../util/sleep.ts';
import { classify, type Classified, type ClassifyOptions } from './classify.ts';
import { describeEndpoint, endpointHint } from './endpoints.ts';

/**
 * The one retry loop of the project (docs/operations.md, "Error policy"):
 * capped exponential backoff with jitter; retriable errors (as
 * src/lifecycle/classify.ts decides) are retried, anything else is thrown
 * at once as a named error. Always-on processes retry forever; one-shot
 * commands pass `maxWaitMs` and then fail with STARTUP_TIMEOUT, naming the
 * server and the setting that points at it.
 */
export interface RetryOptions extends ClassifyOptions {
  /** What is being attempted, for the log ("start-up", "migrations"). */
  what: string;
  log: Logger;
  signal?: AbortSignal;
  /** Give up after this long; undefined retries forever. */
  maxWaitMs?: number;
  baseMs?: number;
  capMs?: number;
  /** At most one "waiting for ..." line per this many ms. */
  logEveryMs?: number;
}

export const RETRY_DEFAULTS = { baseMs: 200, capMs: 10_000, logEveryMs: 5_000 } as const;

/**
 * Delay before attempt `attempt` (0-based): min(cap, base * 2^attempt),
 * with "equal jitter" (half fixed, half random) so that restarted processes
 * do not retry in lockstep yet never spin with a zero delay.
 */
export function backoffDelay(attempt: number, baseMs: number = RETRY_DEFAULTS.baseMs, capMs: number = RETRY_DEFAULTS.capMs, rand: () => number = Math.random): number {
  const d = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + rand() * (d / 2));
}

/**
 * Throttled "waiting for X" lines: the first failure is logged at once, then
 * at most one line per `everyMs`, each with the time waited so far; when the
 * server answers again, one line says so.
 */
export class WaitLog {
  private readonly since = Date.now();
  private lastLogged = -Infinity;
  private logged = false;

  constructor(private readonly log: Logger, private readonly what: string, private readonly everyMs: number = RETRY_DEFAULTS.logEveryMs) {}

  get waitedMs(): number {
    return Date.now() - this.since;
  }

  failed(c: Classified, retryInMs: number): void {
    const now = Date.now();
    if (now - this.lastLogged < this.everyMs) return;
    this.lastLogged = now;
    this.logged = true;
    const secs = Math.round(this.waitedMs / 1000);
    const target = c.endpoint ? `${c.endpoint.service} at ${c.endpoint.address}` : this.what;
    this.log.warn({
      what: this.what, service: c.endpoint?.service, setting: c.endpoint?.setting, code: c.error.code,
      reason: c.error.message, hint: c.endpoint && /^cannot reach /.test(c.error.message) ? endpointHint(c.endpoint) : undefined, retryInMs, waitedMs: this.waitedMs,
    }, `waiting for ${target} (${secs} s)…`);
  }

  recovered(): void {
    if (this.logged) this.log.info({ what: this.what, waitedMs: this.waitedMs }, `${this.what}: going on after ${Math.round(this.waitedMs / 1000)} s`);
  }
}

/** Runs `fn` until it succeeds, a fatal error occurs, the signal aborts or `maxWaitMs` passes. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const waits = new WaitLog(o.log, o.what, o.logEveryMs);
  for (let attempt = 0; ; attempt++) {
    try {
      const out = await fn(attempt);
      waits.recovered();
      return out;
    } catch (err) {
      const c = classify(err, o);
      if (!c.retriable || o.signal?.aborted) throw c.error;
      const delay = backoffDelay(attempt, o.baseMs, o.capMs);
      if (o.maxWaitMs !== undefined && waits.waitedMs + delay > o.maxWaitMs) throw timeoutError(c, waits.waitedMs, o.what);
      waits.failed(c, delay);
      await sleep(delay, o.signal);
      if (o.signal?.aborted) throw c.error;
    }
  }
}

function timeoutError(c: Classified, waitedMs: number, what: string): CdcError {
  const secs = Math.max(1, Math.round(waitedMs / 1000));
  const msg = c.endpoint
    ? `${describeEndpoint(c.endpoint)} did not answer in ${secs} s (${c.error.message.replace(/^cannot reach .*?: /, '').replace(/^.*? is not ready: /, '')})`
    : `${what} did not succeed in ${secs} s: ${c.error.message}`;
  return new StartupTimeoutError(msg, { cause: c.error });
}

/**
 * How long one-shot commands wait for their servers: STARTUP_WAIT_MS
 * (default 15 s). Always-on processes ignore it and wait forever.
 */
export function oneShotWaitMs(env: Env = process.env): number {
  return int(env, 'STARTUP_WAIT_MS', 15_000, { min: 0 });
}
