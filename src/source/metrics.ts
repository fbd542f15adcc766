import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Capture metrics for Prometheus (served on loopback) and for the periodic
 * progress log line.
 */
export class CaptureMetrics {
  readonly registry = new Registry();
  readonly events = new Counter({ name: 'capture_events_total', help: 'Change events handed to Kafka and acknowledged', labelNames: ['table', 'op'] as const, registers: [this.registry] });
  readonly dlq = new Counter({ name: 'capture_dlq_total', help: 'Events that could not be encoded and went to a dead-letter topic', labelNames: ['table'] as const, registers: [this.registry] });
  readonly latency = new Histogram({
    name: 'capture_commit_to_ack_seconds', help: 'Source commit time to Kafka acknowledgement',
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
  });
  readonly slotLag = new Gauge({ name: 'capture_slot_lag_bytes', help: 'WAL retained for the slot (current WAL LSN - confirmed_flush_lsn)', registers: [this.registry] });
  readonly confirmedLsn = new Gauge({ name: 'capture_confirmed_lsn', help: 'Confirmed flush LSN reported to Postgres', registers: [this.registry] });
  readonly buffered = new Gauge({ name: 'capture_buffered_bytes', help: 'Encoded bytes waiting for or in a Kafka send', registers: [this.registry] });
  readonly snapshotRows = new Gauge({ name: 'capture_snapshot_rows', help: 'Snapshot rows read, per table', labelNames: ['table'] as const, registers: [this.registry] });
  readonly snapshotEstimate = new Gauge({ name: 'capture_snapshot_rows_estimated', help: 'Estimated rows per table being snapshotted', labelNames: ['table'] as const, registers: [this.registry] });
  private server: Server | null = null;

  /** Acked events since the last call, for the progress log. */
  ackedSinceLast = 0;
  /** Exact commit -> ack latencies in ms (one per acknowledged transaction), bounded; for benchmarks. */
  readonly latencySamples: number[] = [];

  observeLatency(ms: number): void {
    this.latency.observe(ms / 1000);
    if (this.latencySamples.length < 1_000_000) this.latencySamples.push(ms);
  }

  async listen(host: string, port: number): Promise<number> {
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') { res.writeHead(404).end(); return; }
      this.registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
      }, (err: Error) => res.writeHead(500).end(err.message));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve());
    });
    const addr = this.server.address();
    return typeof addr === 'object' && addr ? addr.port : port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
