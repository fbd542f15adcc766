import type { Consumer } from 'kafkajs';
import { UnavailableError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export interface GroupLivenessOptions {
  log: Logger;
  signal: AbortSignal;
  /** Where the stuck member is reported (runMain's ctx.fatal rebuilds the services on a retriable error). */
  onFatal?: (err: Error) => void;
  name: string;
  isStopping: () => boolean;
  /** No accepted heartbeat and no join for this long: the member is stuck. */
  boundMs: number;
  /** How often the bound is checked. */
  checkMs?: number;
  now?: () => number;
}

/**
 * The group-membership half of "never alive and idle". kafkajs can stay in
 * one rejoin for minutes after coordinators move (a broker killed, then its
 * partitions' leadership moving back): JoinGroup waits up to the rebalance
 * timeout, is retried, and meanwhile batches fetched before still apply, so
 * the progress watchdog sees progress while the group holds nothing. A
 * member in a group has its heartbeat accepted every heartbeat interval
 * (kafkajs sends one after every fetch, empty or not), so no accepted
 * heartbeat and no join for `boundMs` (the session timeout twice plus the
 * rebalance timeout: longer than any rebalance that completes) means stuck.
 * It is reported as retriable: the process builds its clients anew, which
 * finds the coordinator from scratch. Armed from the first join on: start-up
 * has its own waits.
 */
export function watchGroupLiveness(consumer: Consumer, o: GroupLivenessOptions): () => void {
  const now = o.now ?? Date.now;
  const e = consumer.events;
  let alive: number | undefined;
  let fired = false;
  const seen = () => { alive = now(); };
  const off = [consumer.on(e.GROUP_JOIN, seen), consumer.on(e.HEARTBEAT, seen)];
  const timer = setInterval(() => {
    if (alive === undefined || fired || o.signal.aborted || o.isStopping()) return;
    const silentMs = now() - alive;
    if (silentMs < o.boundMs) return;
    fired = true;
    const err = new UnavailableError('KAFKA_UNAVAILABLE', `${o.name}: no heartbeat accepted by the group coordinator for ${Math.round(silentMs / 1000)} s (bound ${Math.round(o.boundMs / 1000)} s); reconnecting`);
    o.log.error({ err: err.message, code: err.code }, 'consumer group member stuck');
    o.onFatal?.(err);
  }, o.checkMs ?? 1000);
  timer.unref();
  const stop = () => {
    clearInterval(timer);
    for (const f of off) f();
  };
  consumer.on(e.STOP, stop);
  consumer.on(e.DISCONNECT, stop);
  o.signal.addEventListener('abort', stop, { once: true });
  return stop;
}
