import type { Consumer, RetryOptions } from 'kafkajs';
import { AuthFailedError, ConsumerCrashedError, UnavailableError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { classify, rootMessage } from './classify.ts';
import type { Endpoint } from './endpoints.ts';

/**
 * The error policy applied to a kafkajs consumer (docs/operations.md, "Error
 * policy"). kafkajs restarts a crashed consumer only when the crash looks
 * transient to *it* and `restartOnFailure` agrees; otherwise it disconnects
 * and emits CRASH with `restart: false`, and the process would stay alive
 * doing nothing (the DLQ send refused as too large did exactly that). So:
 *
 * - `restartOnFailure` restarts in place when our classifier calls the
 *   cause retriable (Postgres restarting, the registry down, a leader
 *   moving) and refuses otherwise;
 * - a CRASH without restart is reported to `onFatal`: as a retriable
 *   UnavailableError when the cause is one (runMain then rebuilds the
 *   services), else as ConsumerCrashedError (the process exits 1).
 */
export interface ConsumerPolicyOptions {
  log: Logger;
  signal: AbortSignal;
  /** Where failures that end this consumer go (runMain's ctx.fatal); without it they are only logged. */
  onFatal?: (err: Error) => void;
  endpoints?: Endpoint[];
  /** kafkajs retries of one failed batch before the crash path. */
  retries?: number;
}

export function consumerRetry(o: ConsumerPolicyOptions): RetryOptions {
  return {
    retries: o.retries ?? 8,
    restartOnFailure: async (err) => {
      if (o.signal.aborted) return false;
      const c = classify(err, { endpoints: o.endpoints });
      if (c.retriable) o.log.error({ err: c.error.message }, 'consumer failed; restarting it');
      else o.log.error({ err: c.error.message, code: c.error.code }, 'consumer failed for good');
      return c.retriable;
    },
  };
}

/** Watches CRASH events; `isStopping` tells a crash during our own stop() from a real one. */
export function watchConsumerCrash(consumer: Consumer, o: ConsumerPolicyOptions & { name: string; isStopping: () => boolean }): void {
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (payload.restart || o.signal.aborted || o.isStopping()) return;
    const c = classify(payload.error, { endpoints: o.endpoints });
    const err = c.retriable
      ? new UnavailableError((c.error as UnavailableError).code, `${o.name} stopped: ${c.error.message}`, { cause: payload.error })
      : c.error instanceof AuthFailedError ? c.error : new ConsumerCrashedError(`${o.name} stopped for good: ${rootMessage(payload.error)}`, { cause: payload.error });
    o.log.error({ err: err.message, code: err.code, group: payload.groupId }, 'consumer crashed without restarting');
    o.onFatal?.(err);
  });
}
