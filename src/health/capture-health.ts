import type pg from 'pg';
import type { Logger } from '../logger.ts';
import type { CaptureConfig } from '../source/capture-config.ts';
import type { CaptureMetrics } from '../source/metrics.ts';
import { HealthServer } from './health-server.ts';
import { HealthState } from './health-state.ts';
import { formatBytes, readSlotWal } from './slot-wal.ts';
import { ProgressWatchdog, WatchdogRunner, type StalledError, type WatchdogSample } from './watchdog.ts';

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

/**
 * The capture's health: conditions (`replication`, `watchdog`, `probe`),
 * the /healthz /readyz /metrics listener on CAPTURE_METRICS_PORT and the
 * progress watchdog, kept here so the capture service only reports its
 * lifecycle (listening, streaming, failed, stopped).
 */
export class CaptureHealth {
  readonly state: HealthState;
  private readonly server: HealthServer;
  private watchdog: WatchdogRunner | null = null;

  constructor(private readonly cfg: CaptureConfig, private readonly metrics: CaptureMetrics, private readonly log: Logger) {
    this.state = new HealthState(metrics.registry, log);
    this.state.initCondition('replication', { healthy: false, detail: 'starting' });
    this.server = new HealthServer({ process: 'capture', host: cfg.metricsHost, port: cfg.metricsPort, portSetting: 'CAPTURE_METRICS_PORT', health: this.state, registry: metrics.registry, log });
  }

  /** Starts the listener; resolves to the bound port (null when disabled). */
  async listen(): Promise<number | null> {
    await this.server.start();
    return this.server.port;
  }

  /** Streaming began: ready, and the watchdog starts watching the slot. */
  streaming(pool: pg.Pool, onExit: (err: StalledError) => void): void {
    const { cfg } = this;
    this.state.setCondition('replication', { healthy: true, detail: `streaming slot ${cfg.slot}` });
    this.watchdog = new WatchdogRunner({
      watchdog: new ProgressWatchdog(cfg.watchdog), intervalMs: cfg.watchdog.intervalMs, health: this.state, log: this.log, onExit,
      sample: captureSampler({ pool, slot: cfg.slot, metrics: this.metrics, idleBytes: cfg.watchdogIdleBytes, walWarnBytes: cfg.walWarnBytes, log: this.log }),
    });
    this.watchdog.start();
  }

  failed(err: Error): void {
    this.state.setCondition('replication', { healthy: false, detail: `failed: ${err.message}` });
  }

  /** Stops the watchdog at once; the listener with `close` (last, so probes see the shutdown). */
  stopWatching(): void {
    this.watchdog?.stop();
  }

  close(): Promise<void> {
    this.stopWatching();
    return this.server.stop();
  }
}
