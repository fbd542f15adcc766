import type pg from 'pg';
import { clvSelectSql, DEFAULT_CLV_THRESHOLDS, dimCustomersSelectSql, dimProductsSelectSql, factOrdersSelectSql, fulfillmentSelectSql, martSalesSelectSql, type ClvThresholds } from './derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';

/**
 * The batch recomputation of every derived table from staging (docs/contract.md §4:
 * "equals a batch recomputation ... row for row"), as plain SQL. It is the
 * reference the streaming consumer is tested against and the basis of the
 * `verify` command: each model (models/*.sql) rendered unfiltered, with
 * every ref() the recomputation of the model it names, so the expected
 * rows come from staging alone. dim_customers is computed set-based here,
 * independently of the TypeScript walk the consumer uses
 * (src/transforms/scd2.ts).
 */

export interface TableCheck {
  table: string;
  /** Expected rows (batch SQL) and actual rows, with the same column list. */
  expected: string;
  actual: string;
}

export function batchChecks(schemas: WarehouseSchemas, thresholds: ClvThresholds = DEFAULT_CLV_THRESHOLDS): TableCheck[] {
  const { stg, an } = quoted(schemas);
  const dimCust = `(${dimCustomersSelectSql(stg)})`;
  const dimProd = `(${dimProductsSelectSql(stg)})`;
  const fact = `(${factOrdersSelectSql(stg, dimCust)})`;
  const clvCols = 'customer_id, customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value, first_order_date, last_order_date, customer_lifetime_days, value_segment, frequency_segment';
  return [
    { table: 'dim_products', expected: `SELECT * FROM ${dimProd} x`, actual: `SELECT * FROM ${an}.dim_products` },
    { table: 'dim_customers', expected: `SELECT * FROM ${dimCust} x`, actual: `SELECT * FROM ${an}.dim_customers` },
    {
      table: 'dim_date',
      // Default range, extended contiguously to cover every order date ever seen.
      expected: `SELECT * FROM ${an}.dim_date_rows(
                   LEAST('2020-01-01'::date, (SELECT min((order_date AT TIME ZONE 'UTC')::date) FROM ${stg}.order_status_changes)),
                   GREATEST('2030-12-31'::date, (SELECT max((order_date AT TIME ZONE 'UTC')::date) FROM ${stg}.order_status_changes)))`,
      actual: `SELECT * FROM ${an}.dim_date`,
    },
    { table: 'fact_orders', expected: `SELECT * FROM ${fact} x`, actual: `SELECT * FROM ${an}.fact_orders` },
    {
      table: 'customer_lifetime_value',
      expected: clvSelectSql(fact, dimCust, thresholds),
      actual: `SELECT ${clvCols} FROM ${an}.customer_lifetime_value`,
    },
    { table: 'mart_sales', expected: martSalesSelectSql(fact, dimProd), actual: `SELECT * FROM ${an}.mart_sales` },
    { table: 'order_fulfillment', expected: fulfillmentSelectSql(stg), actual: `SELECT * FROM ${an}.order_fulfillment` },
  ];
}

export interface TableDiff {
  table: string;
  missing: number;
  unexpected: number;
  samples: { missing: unknown[]; unexpected: unknown[] };
}

/**
 * Row-for-row comparison (multiset) of every derived table with its batch
 * recomputation: one statement per table, computing the expected and the
 * actual rows once each and both differences from them (counts and the
 * first few rows of each). `onTable` is told of each table once compared.
 */
export async function diffDerivedTables(
  client: pg.ClientBase, schemas: WarehouseSchemas, thresholds?: ClvThresholds, onTable?: (table: string) => void, sampleSize = 5,
): Promise<TableDiff[]> {
  const out: TableDiff[] = [];
  // Every comparison reads whole tables. The planner cannot estimate the
  // recomputed relations (window functions, derived filters: `is_current`
  // of the SCD2 rows came out as 1 row for 25,000), and a nested loop over
  // them is quadratic: the CLV check ran for minutes at 100k orders.
  await client.query('SET enable_nestloop = off');
  try {
    for (const c of batchChecks(schemas, thresholds)) {
      out.push(await diffOne(client, c, sampleSize));
      onTable?.(c.table);
    }
  } finally {
    // In a failed transaction this fails too; the caller's error is the one to see.
    await client.query('RESET enable_nestloop').catch(() => {});
  }
  return out;
}

async function diffOne(client: pg.ClientBase, c: TableCheck, sampleSize: number): Promise<TableDiff> {
  const { rows } = await client.query<Record<string, unknown> & { _side: string; _n: string }>(`
    WITH e AS MATERIALIZED (${c.expected}), a AS MATERIALIZED (${c.actual}),
    m AS MATERIALIZED (SELECT * FROM e EXCEPT ALL SELECT * FROM a),
    u AS MATERIALIZED (SELECT * FROM a EXCEPT ALL SELECT * FROM e)
    (SELECT 'missing' AS _side, (SELECT count(*) FROM m) AS _n, m.* FROM m LIMIT ${sampleSize})
    UNION ALL
    (SELECT 'unexpected' AS _side, (SELECT count(*) FROM u) AS _n, u.* FROM u LIMIT ${sampleSize})`);
  const side = (s: string) => rows.filter((r) => r._side === s).map(({ _side: _, _n: __, ...row }) => row);
  const count = (s: string) => Number(rows.find((r) => r._side === s)?._n ?? 0);
  return {
    table: c.table,
    missing: count('missing'),
    unexpected: count('unexpected'),
    samples: { missing: side('missing'), unexpected: side('unexpected') },
  };
}
