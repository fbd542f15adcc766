import type pg from 'pg';
import type { Logger } from '../logger.ts';
import type { CaptureMetrics } from '../source/metrics.ts';
import { formatBytes, readSlotWal } from './slot-wal.ts';
import type { WatchdogSample } from './watchdog.ts';

export interface CaptureProbeOptions {
  pool: pg.Pool;
  slot: string;
  metrics: CaptureMetrics;
  /** Unconfirmed WAL up to this size is not work: the capture's own heartbeats and WAL written between two keepalives. */
  idleBytes: number;
  /** Retained WAL above this is logged as a warning (and `status` warns). */
  walWarnBytes: number;
  log: Logger;
}

/**
 * The capture's watchdog sample: work is WAL beyond the slot's confirmed
 * position (minus `idleBytes` of heartbeat noise); progress is the slot's
 * confirmed_flush_lsn together with the count of events Kafka acknowledged
 * (a long transaction or a re-snapshot moves the second before the first).
 * Also refreshes the slot gauges and warns when the slot retains too much WAL.
 */
export function captureSampler(o: CaptureProbeOptions): () => Promise<WatchdogSample> {
  let warnedAt = 0;
  return async () => {
    const w = await readSlotWal(o.pool, o.slot);
    if (!w) throw new Error(`replication slot ${o.slot} does not exist`);
    const m = o.metrics;
    m.walRetained.set(Number(w.retainedBytes));
    m.slotLag.set(Number(w.unconfirmedBytes));
    if (w.confirmedLsn !== null) m.slotConfirmedLsn.set(Number(w.confirmedLsn));
    if (w.safeWalSize !== null) m.safeWalSize.set({ slot: o.slot }, Number(w.safeWalSize));
    else m.safeWalSize.reset();
    m.walWarn.set(o.walWarnBytes);
    if (w.retainedBytes > BigInt(o.walWarnBytes) && Date.now() - warnedAt > 600_000) {
      warnedAt = Date.now();
      o.log.warn({ slot: o.slot, retainedBytes: Number(w.retainedBytes), warnBytes: o.walWarnBytes, walStatus: w.walStatus }, `slot retains ${formatBytes(w.retainedBytes)} of WAL (over CAPTURE_WAL_WARN_BYTES); see docs/operations.md "WAL safety"`);
    }
    return {
      work: w.unconfirmedBytes > BigInt(o.idleBytes),
      progress: `${w.confirmedLsn}/${m.ackedTotal}`,
      detail: `${formatBytes(w.unconfirmedBytes)} of WAL unconfirmed`,
    };
  };
}
