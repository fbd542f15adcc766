import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Capture metrics for Prometheus (served with /healthz and /readyz by the
 * shared HealthServer, src/health/) and for the periodic progress log line.
 * Names and meanings: docs/operations.md, "Health and metrics".
 */
export class CaptureMetrics {
  readonly registry = new Registry();
  readonly events = new Counter({ name: 'capture_events_total', help: 'Change events handed to Kafka and acknowledged; rate() is events/s', labelNames: ['table', 'op'] as const, registers: [this.registry] });
  readonly dlq = new Counter({ name: 'capture_dlq_total', help: 'Events that could not be encoded and went to a dead-letter topic', labelNames: ['table'] as const, registers: [this.registry] });
  readonly latency = new Histogram({
    name: 'capture_commit_to_ack_seconds', help: 'Source commit time to Kafka acknowledgement, per transaction',
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
  });
  readonly slotLag = new Gauge({ name: 'capture_slot_lag_bytes', help: 'WAL not yet confirmed by the capture (current WAL LSN - confirmed_flush_lsn)', registers: [this.registry] });
  readonly walRetained = new Gauge({ name: 'capture_slot_wal_retained_bytes', help: 'WAL the server keeps for the slot (current WAL LSN - restart_lsn)', registers: [this.registry] });
  readonly walWarn = new Gauge({ name: 'capture_slot_wal_warn_bytes', help: 'CAPTURE_WAL_WARN_BYTES: retained WAL above this is warned about', registers: [this.registry] });
  // Labelled so that it is absent, not 0, while the server has no max_slot_wal_keep_size.
  readonly safeWalSize = new Gauge({ name: 'capture_slot_safe_wal_size_bytes', help: 'WAL the slot may still fall behind before max_slot_wal_keep_size invalidates it (absent without the limit)', labelNames: ['slot'] as const, registers: [this.registry] });
  readonly confirmedLsn = new Gauge({ name: 'capture_confirmed_lsn', help: 'Confirmed flush LSN the capture reported to Postgres (as a number)', registers: [this.registry] });
  readonly slotConfirmedLsn = new Gauge({ name: 'capture_slot_confirmed_lsn', help: 'confirmed_flush_lsn of the slot as pg_replication_slots shows it (as a number)', registers: [this.registry] });
  /** Where `capture_buffered_bytes` reads from at scrape time (the publisher, once there is one). */
  bufferedBytes: (() => number) | null = null;
  readonly buffered = new Gauge({
    name: 'capture_buffered_bytes', help: 'Encoded bytes waiting for or in a Kafka send (in flight)', registers: [this.registry],
    collect: () => { if (this.bufferedBytes) this.buffered.set(this.bufferedBytes()); },
  });
  readonly snapshotRows = new Gauge({ name: 'capture_snapshot_rows', help: 'Snapshot rows read, per table', labelNames: ['table'] as const, registers: [this.registry] });
  readonly snapshotEstimate = new Gauge({ name: 'capture_snapshot_rows_estimated', help: 'Estimated rows per table being snapshotted', labelNames: ['table'] as const, registers: [this.registry] });

  /** Acked events since the last call, for the progress log. */
  ackedSinceLast = 0;
  /** Acked records since start: part of the watchdog's progress. */
  ackedTotal = 0;
  /** Exact commit -> ack latencies in ms (one per acknowledged transaction), bounded; for benchmarks. */
  readonly latencySamples: number[] = [];
  /** Wall-clock ms at which each latency sample was taken (same index), to line spikes up with stalls. */
  readonly latencyAt: number[] = [];
  /** Source commit -> Begin message decoded here, ms, per transaction (the source's and the network's part of the latency). */
  readonly receiveSamples: number[] = [];

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  acked(n: number): void {
    this.ackedSinceLast += n;
    this.ackedTotal += n;
  }

  observeLatency(ms: number): void {
    this.latency.observe(ms / 1000);
    if (this.latencySamples.length < 1_000_000) { this.latencySamples.push(ms); this.latencyAt.push(Date.now()); }
  }

  observeReceive(ms: number): void {
    if (this.receiveSamples.length < 1_000_000) this.receiveSamples.push(ms);
  }
}
