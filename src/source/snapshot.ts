import pg from 'pg';
import type { Logger } from '../logger.ts';
import { describeTable, type TableDescription } from './catalog.ts';
import type { ReadEvent, Relation, SnapshotMarker } from './change-event.ts';
import type { Lsn } from './lsn.ts';
import { valueParser } from './pg-values.ts';

/**
 * Reads tables inside one consistent snapshot and turns every row into an
 * `op: r` event. With the snapshot exported by CREATE_REPLICATION_SLOT, the
 * rows are exactly the state at the slot's consistent point, so streaming
 * from that point afterwards has no gap and no overlap. Rows are fetched
 * through a cursor in chunks, and the caller's `backpressure()` is awaited
 * between chunks, so memory stays bounded for any table size.
 */
export interface SnapshotTarget {
  /** Prepares schemas/topics for a table before its rows are emitted. */
  prepare(relation: Relation): Promise<void>;
  emit(ev: ReadEvent): void;
  backpressure(): Promise<void>;
  progress(table: string, rowsDone: number, rowsEstimated: number): void;
}

export interface SnapshotOptions {
  url: string;
  tables: string[];
  /** Exported snapshot to import (CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT). */
  snapshotName: string;
  /** LSN the rows are stamped with: the slot's consistent point. */
  lsn: Lsn;
  fetchSize?: number;
}

/** A connection that reads rows in Postgres' text form with the settings pgoutput's text matches, so the same parsers apply. */
export function snapshotClient(url: string, applicationName: string): pg.Client {
  return new pg.Client({
    connectionString: url,
    options: '-c datestyle=ISO -c timezone=UTC -c intervalstyle=iso_8601 -c bytea_output=hex -c extra_float_digits=3',
    types: { getTypeParser: () => (v: string) => v },
    application_name: applicationName,
  } as pg.ClientConfig);
}

/** The Relation of a table as the catalog describes it (key flags from the primary key). */
export function relationOf(desc: TableDescription): Relation {
  return {
    oid: desc.oid, schema: desc.schema, table: desc.table, replicaIdentity: desc.replicaIdentity,
    columns: desc.columns.map(({ notNull: _n, ...c }) => c),
    keyIndexes: desc.columns.flatMap((c, i) => (c.isKey ? [i] : [])),
  };
}

export async function runSnapshot(opts: SnapshotOptions, target: SnapshotTarget, log: Logger): Promise<number> {
  const client = snapshotClient(opts.url, 'shopstream-capture-snapshot');
  await client.connect();
  let total = 0;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT '${opts.snapshotName.replace(/'/g, "''")}'`);
    const { rows: meta } = await client.query<{ xmin: string; now_us: string }>(
      "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, (extract(epoch FROM now()) * 1000000)::bigint::text AS now_us");
    const txId = Number(meta[0]!.xmin);
    const commitTimeUs = BigInt(meta[0]!.now_us);
    // Ordering key (lastCommitLsn, lsn): just below every streamed change. The
    // first streamed transaction gets the consistent point as its last commit;
    // every earlier transaction ended at or before it, so its events are lower.
    const lastCommitLsn = opts.lsn > 0n ? opts.lsn - 1n : 0n;
    let pending: ReadEvent | null = null;
    let order = 0;
    const flushPending = (marker: SnapshotMarker) => {
      if (!pending) return;
      pending.snapshot = marker;
      target.emit(pending);
      pending = null;
    };
    for (const qualified of opts.tables) {
      const [schema, table] = qualified.split('.') as [string, string];
      const desc = await describeTable(client, schema, table);
      if (!desc) { log.warn({ table: qualified }, 'snapshot: table vanished, skipped'); continue; }
      const relation = relationOf(desc);
      await target.prepare(relation);
      const parsers = relation.columns.map((c) => valueParser(c.type));
      const { rows: est } = await client.query<{ n: string }>('SELECT greatest(reltuples, 0)::bigint::text AS n FROM pg_class WHERE oid = $1', [desc.oid]);
      const estimated = Number(est[0]?.n ?? 0);
      const cols = relation.columns.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
      await client.query(`DECLARE snap CURSOR FOR SELECT ${cols} FROM "${schema}"."${table}"`);
      let tableOrder = 0;
      for (;;) {
        const res = await client.query({ text: `FETCH ${opts.fetchSize ?? 5000} FROM snap`, rowMode: 'array' });
        for (const raw of res.rows as (string | null)[][]) {
          const after = raw.map((v, i) => (v === null ? null : parsers[i]!(v)));
          flushPending(order === 1 ? 'first' : 'true');
          order += 1;
          tableOrder += 1;
          pending = {
            kind: 'read', relation, after, snapshot: 'true', lsn: opts.lsn, commitLsn: opts.lsn, lastCommitLsn, txId, commitTimeUs,
            totalOrder: order, tableOrder,
          };
        }
        total += res.rows.length;
        target.progress(qualified, tableOrder, Math.max(estimated, tableOrder));
        if (res.rows.length === 0) break;
        await target.backpressure();
      }
      await client.query('CLOSE snap');
      log.info({ table: qualified, rows: tableOrder }, 'snapshot of table done');
    }
    flushPending('last');
    await client.query('COMMIT');
  } finally {
    await client.end().catch(() => {});
  }
  return total;
}
