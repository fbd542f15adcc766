import type pg from 'pg';
import { TABLES, TABLE_NAMES, type TableName } from '../consumer/tables.ts';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import type { PartitionRange } from './start-offsets.ts';

/**
 * A rebuild from the earliest offset is exact when the topics hold every
 * key's latest change. Compacted topics do (their log start stays at 0);
 * a partition whose log start has moved (delete retention, compact+delete,
 * records deleted) may have lost the only change of a key never updated
 * since, and then the rebuilt staging lacks that row. That is checked here,
 * for the tables of such topics only, once the live group is frozen and the
 * rebuild has applied at least as far: a key the live staging holds that
 * the rebuilt staging neither holds nor saw deleted (no tombstone) is a row
 * the rebuild lost. A re-snapshot after the trim writes every current row
 * to the topics again, after which nothing is missing.
 */
export interface MissingRows {
  table: TableName;
  /** Rows in the live staging the rebuild lacks. */
  missing: number;
  /** A few of their keys, as `a,b` for composite keys. */
  samples: string[];
}

/** Tables whose topic has a partition with a log start above 0 (from the topic's last name segment). */
export function trimmedTables(ranges: readonly PartitionRange[]): TableName[] {
  const out = new Set<TableName>();
  for (const r of ranges) {
    const t = r.topic.split('.').at(-1) as TableName;
    if (r.low > 0n && TABLE_NAMES.includes(t)) out.add(t);
  }
  return [...out];
}

export async function rowsMissingFromRebuild(db: pg.Pool | pg.ClientBase, live: WarehouseSchemas, rebuilt: WarehouseSchemas, tables: readonly TableName[]): Promise<MissingRows[]> {
  const l = quoted(live).stg;
  const r = quoted(rebuilt).stg;
  const out: MissingRows[] = [];
  for (const table of tables) {
    const key = TABLES[table].key;
    const sql = `SELECT concat_ws(',', ${key.map((k) => `lv.${k}`).join(', ')}) AS key FROM ${l}.stg_${table} lv
      WHERE NOT EXISTS (SELECT 1 FROM ${r}.stg_${table} rb WHERE ${key.map((k) => `rb.${k} = lv.${k}`).join(' AND ')})
        AND NOT EXISTS (SELECT 1 FROM ${r}.stg_tombstones t WHERE t.table_name = '${table}' AND t.row_key = concat_ws(',', ${key.map((k) => `lv.${k}`).join(', ')}))`;
    const { rows } = await db.query<{ n: number; samples: string[] | null }>(
      `SELECT count(*)::int AS n, (SELECT array_agg(key) FROM (SELECT key FROM (${sql}) s0 ORDER BY key LIMIT 5) s) AS samples FROM (${sql}) x`);
    const n = rows[0]!.n;
    if (n > 0) out.push({ table, missing: n, samples: rows[0]!.samples ?? [] });
  }
  return out;
}
