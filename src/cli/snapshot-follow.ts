import pg from 'pg';
import { UnavailableError } from '../errors.ts';
import type { CaptureConfig } from '../source/capture-config.ts';
import { sleep } from '../util/sleep.ts';
import { CliProgress, type ProgressSink } from './progress.ts';

export interface FollowOptions {
  /** Give up after this long (ms); 0 waits as long as it takes. */
  timeoutMs: number;
  pollMs?: number;
  stream?: ProgressSink;
  signal?: AbortSignal;
}

/**
 * `shopstream snapshot <table> --wait`: follows the re-snapshot requested at
 * `lsn` through the capture's durable progress row (rows done per chunk in
 * `<meta>.capture_incremental_snapshots`) against the table's row estimate,
 * until the capture has read past the request and the row is gone, which
 * is when the last chunk is in Kafka. Resolves with the rows recorded.
 */
export async function followResnapshot(cfg: Pick<CaptureConfig, 'sourceUrl' | 'slot' | 'metaSchema'>, table: string, lsn: string, o: FollowOptions): Promise<{ rowsRecorded: number; seconds: number }> {
  const client = new pg.Client({ connectionString: cfg.sourceUrl, application_name: 'shopstream-snapshot-wait' });
  await client.connect();
  const started = Date.now();
  try {
    const { rows: [est] } = await client.query<{ n: string }>(
      `SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE (SELECT count(*) FROM ${quoteQualified(table)}) END::text AS n FROM pg_class c WHERE c.oid = $1::regclass`, [table]);
    const estimate = Number(est?.n ?? 0);
    const progress = new CliProgress({ label: `snapshot ${table}`, unit: 'rows', total: estimate, stream: o.stream });
    let rowsRecorded = 0;
    for (;;) {
      if (o.signal?.aborted) throw new Error('interrupted');
      const { rows: [slot] } = await client.query<{ passed: boolean | null }>(
        'SELECT confirmed_flush_lsn >= $1::pg_lsn AS passed FROM pg_replication_slots WHERE slot_name = $2', [lsn, cfg.slot]);
      if (!slot) throw new UnavailableError('SOURCE_UNAVAILABLE', `no replication slot "${cfg.slot}" (CAPTURE_SLOT): start the capture, it takes the request from the WAL`);
      const row = await client.query<{ n: string }>(
        `SELECT rows_done::text AS n FROM "${cfg.metaSchema}".capture_incremental_snapshots WHERE slot_name = $1 AND table_name = $2 AND signal_lsn = $3::pg_lsn`,
        [cfg.slot, table, lsn]).catch((err: { code?: string }) => { if (err.code === '42P01' || err.code === '3F000') return { rows: [] }; throw err; });
      const r = row.rows[0];
      if (r) {
        rowsRecorded = Number(r.n);
        progress.update(rowsRecorded, Math.max(estimate, rowsRecorded));
      } else if (slot.passed) {
        // The request is recorded before the capture confirms past it, so past it and no row means done.
        // The last chunk is never recorded (its row is deleted instead): the bar ends at the table's estimate.
        progress.update(Math.max(estimate, rowsRecorded), Math.max(estimate, rowsRecorded));
        progress.finish('done (final count is the table\'s row estimate; the capture logs the exact one)');
        return { rowsRecorded, seconds: (Date.now() - started) / 1000 };
      }
      if (o.timeoutMs > 0 && Date.now() - started > o.timeoutMs) {
        progress.finish('still running');
        throw new UnavailableError('SOURCE_UNAVAILABLE', `re-snapshot of ${table} not done after ${Math.round(o.timeoutMs / 1000)} s (${rowsRecorded} rows recorded); it goes on in the capture`);
      }
      await sleep(o.pollMs ?? 500, o.signal);
    }
  } finally {
    await client.end();
  }
}

function quoteQualified(table: string): string {
  return table.split('.').map((p) => `"${p.replace(/"/g, '""')}"`).join('.');
}
