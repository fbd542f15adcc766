import type pg from 'pg';
import { clvSelectSql, DEFAULT_CLV_THRESHOLDS, dimCustomersSelectSql, dimProductsSelectSql, factOrdersSelectSql, fulfillmentSelectSql, martSalesSelectSql, type ClvThresholds } from './derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { diffRelations, type TableDiff } from '../../src/rebuild/bucket-diff.ts';

export type { TableDiff } from '../../src/rebuild/bucket-diff.ts';

/**
 * The batch recomputation of every derived table from staging (docs/contract.md §4:
 * "equals a batch recomputation ... row for row"), as plain SQL. It is the
 * reference the streaming consumer is tested against and the basis of the
 * `verify` command: each model (models/*.sql) rendered unfiltered, with
 * every ref() the recomputation of the model it names, so the expected
 * rows come from staging alone. dim_customers is computed set-based here,
 * independently of the TypeScript walk the consumer uses
 * (src/transforms/scd2.ts).
 *
 * Each table is recomputed once, into a temporary table of the session
 * (pg_temp.verify_<table>), which the later models' ref() read: fact_orders
 * over the recomputed dim_customers, CLV and mart_sales over the
 * recomputed fact_orders. Recomputing them inside every check that refers
 * to them cost dim_customers five times and fact_orders three. The
 * temporary tables are created before the snapshot's transaction (a READ
 * ONLY transaction may write temporary tables but not create them), typed
 * like the stored tables, without their constraints (a NULL where the
 * stored table cannot hold one is a difference to report, not an error).
 */

export interface TableCheck {
  table: string;
  /** The expected rows: the model over staging, its ref()s the earlier tables' recomputations. */
  expected: string;
  /** The stored rows compared (every column but the writer's own, such as CLV's version). */
  actual: string;
}

export const RECOMPUTED = (table: string): string => `pg_temp.verify_${table}`;

export function batchChecks(schemas: WarehouseSchemas, thresholds: ClvThresholds = DEFAULT_CLV_THRESHOLDS): TableCheck[] {
  const { stg, an } = quoted(schemas);
  const dimCust = RECOMPUTED('dim_customers');
  const fact = RECOMPUTED('fact_orders');
  const clvCols = 'customer_id, customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value, first_order_date, last_order_date, customer_lifetime_days, value_segment, frequency_segment';
  return [
    { table: 'dim_products', expected: dimProductsSelectSql(stg), actual: `SELECT * FROM ${an}.dim_products` },
    { table: 'dim_customers', expected: dimCustomersSelectSql(stg), actual: `SELECT * FROM ${an}.dim_customers` },
    {
      table: 'dim_date',
      // Default range, extended contiguously to cover every order date ever seen.
      expected: `SELECT * FROM ${an}.dim_date_rows(
                   LEAST('2020-01-01'::date, (SELECT min((order_date AT TIME ZONE 'UTC')::date) FROM ${stg}.order_status_changes)),
                   GREATEST('2030-12-31'::date, (SELECT max((order_date AT TIME ZONE 'UTC')::date) FROM ${stg}.order_status_changes)))`,
      actual: `SELECT * FROM ${an}.dim_date`,
    },
    { table: 'fact_orders', expected: factOrdersSelectSql(stg, dimCust), actual: `SELECT * FROM ${an}.fact_orders` },
    { table: 'customer_lifetime_value', expected: clvSelectSql(fact, dimCust, thresholds), actual: `SELECT ${clvCols} FROM ${an}.customer_lifetime_value` },
    { table: 'mart_sales', expected: martSalesSelectSql(fact, RECOMPUTED('dim_products')), actual: `SELECT * FROM ${an}.mart_sales` },
    { table: 'order_fulfillment', expected: fulfillmentSelectSql(stg), actual: `SELECT * FROM ${an}.order_fulfillment` },
  ];
}

/** Tables other models ref(): analyzed once filled, so the joins over them are planned on real row counts. */
const REFERENCED = new Set(['dim_products', 'dim_customers', 'fact_orders']);

/**
 * Creates the (empty) temporary tables, outside any transaction, and
 * returns each table's compared columns. Drops earlier ones first: a
 * pooled connection may hold those of a verify that failed half-way.
 */
export async function prepareRecomputeTables(client: pg.ClientBase, checks: TableCheck[]): Promise<Map<string, string[]>> {
  const cols = new Map<string, string[]>();
  for (const c of checks) {
    await client.query(`DROP TABLE IF EXISTS ${RECOMPUTED(c.table)}`);
    await client.query(`CREATE TEMP TABLE verify_${c.table} AS SELECT * FROM (${c.actual}) a WITH NO DATA`);
    const { fields } = await client.query(`SELECT * FROM ${RECOMPUTED(c.table)} LIMIT 0`);
    cols.set(c.table, fields.map((f) => f.name));
  }
  return cols;
}

export async function dropRecomputeTables(client: pg.ClientBase, checks: TableCheck[]): Promise<void> {
  await client.query(checks.map((c) => `DROP TABLE IF EXISTS ${RECOMPUTED(c.table)}`).join('; '));
}

async function setLocal(client: pg.ClientBase, settings: Record<string, string>): Promise<Record<string, string>> {
  const before: Record<string, string> = {};
  for (const [k, v] of Object.entries(settings)) {
    before[k] = (await client.query<{ v: string }>('SELECT current_setting($1) AS v', [k])).rows[0]!.v;
    await client.query('SELECT set_config($1, $2, true)', [k, v]);
  }
  return before;
}

/**
 * Inside the caller's transaction (verify's REPEATABLE READ snapshot, after
 * prepareRecomputeTables): fills each temporary table from its model and
 * compares it with the stored table (src/rebuild/bucket-diff.ts).
 * `onTable` is told of each table once compared.
 */
export async function diffDerivedTablesInSnapshot(
  client: pg.ClientBase, checks: TableCheck[], columns: Map<string, string[]>, onTable?: (table: string) => void, sampleSize = 5,
): Promise<TableDiff[]> {
  const out: TableDiff[] = [];
  // The planner cannot estimate the recomputed relations (window functions,
  // derived filters: `is_current` of the SCD2 rows came out as 1 row for
  // 25,000), and a nested loop over them is quadratic.
  const before = await setLocal(client, { enable_nestloop: 'off' });
  for (const c of checks) {
    const t0 = Date.now();
    await client.query(`INSERT INTO ${RECOMPUTED(c.table)} SELECT * FROM (${c.expected}) e`);
    if (REFERENCED.has(c.table)) await client.query(`ANALYZE ${RECOMPUTED(c.table)}`);
    const recompute = Date.now() - t0;
    const actual = `(${c.actual})`;
    const d = await diffRelations(client, c.table, RECOMPUTED(c.table), actual, columns.get(c.table)!, sampleSize);
    out.push({ ...d, ms: { recompute, compare: d.ms?.compare ?? 0 } });
    onTable?.(c.table);
  }
  await setLocal(client, before);
  return out;
}

/**
 * Opens verify's snapshot: REPEATABLE READ (one consistent view of a live
 * warehouse), READ ONLY (nothing but the session's temporary tables can be
 * written), and work_mem raised for this transaction alone, so the
 * recomputation's sorts (SCD2 windows, fact_orders' DISTINCT ON and order
 * totals) and the key checks' hash aggregates stay in memory at 1.2M lines
 * instead of merging on disk.
 */
export async function beginVerifySnapshot(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`SET LOCAL work_mem = '128MB'`);
}

/**
 * Row-for-row comparison (multiset) of every derived table with its batch
 * recomputation, in a snapshot of its own (REPEATABLE READ, READ ONLY): the
 * form the tests call on a quiet warehouse. verify runs the same steps
 * inside its own snapshot, shared with the data checks.
 */
export async function diffDerivedTables(
  client: pg.ClientBase, schemas: WarehouseSchemas, thresholds?: ClvThresholds, onTable?: (table: string) => void, sampleSize = 5,
): Promise<TableDiff[]> {
  const checks = batchChecks(schemas, thresholds);
  const columns = await prepareRecomputeTables(client, checks);
  try {
    await beginVerifySnapshot(client);
    try {
      return await diffDerivedTablesInSnapshot(client, checks, columns, onTable, sampleSize);
    } finally {
      await client.query('ROLLBACK').catch(() => {});
    }
  } finally {
    // On a broken connection this fails too; the caller's error is the one to see.
    await dropRecomputeTables(client, checks).catch(() => {});
  }
}
