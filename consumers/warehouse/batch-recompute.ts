import type pg from 'pg';
import { PRICE_TIER, clvSelectSql, DEFAULT_CLV_THRESHOLDS, factOrdersSelectSql, fulfillmentSelectSql, type ClvThresholds } from './derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';

/**
 * The batch recomputation of every derived table from staging (docs/contract.md §4:
 * "equals a batch recomputation ... row for row"), as plain SQL. It is the
 * reference the streaming consumer is tested against and the basis of the
 * `verify` command. dim_customers is computed set-based here, independently
 * of the TypeScript walk the consumer uses (src/transforms/scd2.ts).
 */

/** SCD2 over staging.customer_changes, the rules of src/transforms/scd2.ts in SQL. */
export function dimCustomersBatchSql(stg: string): string {
  return `
    WITH h AS (
      SELECT *, lead(op) OVER w AS next_op, lead(updated_at) OVER w AS next_upd
      FROM ${stg}.customer_changes WINDOW w AS (PARTITION BY customer_id ORDER BY seq, lsn)
    ),
    -- one change per run of same-updated_at upserts: keep the run's last row
    runs AS (
      SELECT * FROM h
      WHERE op = 'd' OR NOT (next_op IS NOT NULL AND next_op <> 'd' AND next_upd IS NOT DISTINCT FROM updated_at)
    ),
    -- life = number of deletes before the row; a delete ends the life it numbers
    lives AS (
      SELECT *, coalesce(count(*) FILTER (WHERE op = 'd') OVER (PARTITION BY customer_id ORDER BY seq, lsn ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS life
      FROM runs
    ),
    ups AS (
      SELECT *, CASE WHEN lag(lsn) OVER wl IS NULL OR lag(customer_segment) OVER wl IS DISTINCT FROM customer_segment THEN 1 ELSE 0 END AS starts
      FROM lives WHERE op <> 'd' AND updated_at IS NOT NULL
      WINDOW wl AS (PARTITION BY customer_id, life ORDER BY seq, lsn)
    ),
    ver AS (SELECT *, sum(starts) OVER (PARTITION BY customer_id ORDER BY seq, lsn) AS vno FROM ups),
    vagg AS (
      SELECT customer_id, life, vno,
             min(updated_at) FILTER (WHERE starts = 1) AS effective_date,
             (array_agg(email_normalized ORDER BY seq DESC, lsn DESC))[1] AS email,
             (array_agg(full_name ORDER BY seq DESC, lsn DESC))[1] AS full_name,
             (array_agg(customer_segment ORDER BY seq DESC, lsn DESC))[1] AS customer_segment
      FROM ver GROUP BY customer_id, life, vno
    ),
    dels AS (SELECT customer_id, life, committed_at FROM lives WHERE op = 'd'),
    closed AS (
      SELECT v.*, lead(v.effective_date) OVER (PARTITION BY v.customer_id, v.life ORDER BY v.vno) AS next_eff, d.committed_at AS deleted_at
      FROM vagg v LEFT JOIN dels d ON d.customer_id = v.customer_id AND d.life = v.life
    )
    SELECT md5(customer_id::text || '-' || to_char(effective_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) AS customer_key,
           customer_id, email, full_name, customer_segment, effective_date,
           coalesce(next_eff, deleted_at, '9999-12-31T00:00:00Z'::timestamptz) AS expiration_date,
           next_eff IS NULL AND deleted_at IS NULL AS is_current
    FROM closed`;
}

export interface TableCheck {
  table: string;
  /** Expected rows (batch SQL) and actual rows, with the same column list. */
  expected: string;
  actual: string;
}

export function batchChecks(schemas: WarehouseSchemas, thresholds: ClvThresholds = DEFAULT_CLV_THRESHOLDS): TableCheck[] {
  const { stg, an } = quoted(schemas);
  const dimCust = `(${dimCustomersBatchSql(stg)})`;
  const fact = `(${factOrdersSelectSql(stg, dimCust)})`;
  const clvCols = 'customer_id, customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value, first_order_date, last_order_date, customer_lifetime_days, value_segment, frequency_segment';
  return [
    {
      table: 'dim_products',
      expected: `SELECT md5(product_id::text) AS product_key, product_id, product_name, category, price, rating,
                   ${PRICE_TIER} AS price_tier
                 FROM ${stg}.stg_products`,
      actual: `SELECT * FROM ${an}.dim_products`,
    },
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
    {
      table: 'mart_sales',
      // Straight from staging, not through fact_orders, as an analyst would write it;
      // products without a category form the day's NULL group, as GROUP BY makes it.
      expected: `SELECT to_char(o.order_date AT TIME ZONE 'UTC', 'YYYYMMDD')::int AS date_key, p.category,
                   count(DISTINCT o.order_id)::int AS orders, sum(i.quantity)::bigint AS units,
                   sum(round(i.quantity * i.unit_price * (1 - i.discount), 2)) AS revenue
                 FROM ${stg}.stg_order_items i JOIN ${stg}.stg_orders o ON o.order_id = i.order_id
                 JOIN ${stg}.stg_products p ON p.product_id = i.product_id
                 WHERE o.status NOT IN ('cancelled', 'returned')
                 GROUP BY 1, 2`,
      actual: `SELECT * FROM ${an}.mart_sales`,
    },
    { table: 'order_fulfillment', expected: fulfillmentSelectSql(stg), actual: `SELECT * FROM ${an}.order_fulfillment` },
  ];
}

export interface TableDiff {
  table: string;
  missing: number;
  unexpected: number;
  samples: { missing: unknown[]; unexpected: unknown[] };
}

/** Row-for-row comparison (multiset) of every derived table with its batch recomputation. */
export async function diffDerivedTables(client: pg.ClientBase, schemas: WarehouseSchemas, thresholds?: ClvThresholds, onTable?: (table: string) => void): Promise<TableDiff[]> {
  const out: TableDiff[] = [];
  for (const c of batchChecks(schemas, thresholds)) {
    const missing = await client.query(`SELECT * FROM ((${c.expected}) EXCEPT ALL (${c.actual})) d LIMIT 5`);
    const unexpected = await client.query(`SELECT * FROM ((${c.actual}) EXCEPT ALL (${c.expected})) d LIMIT 5`);
    const count = async (sql: string) => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM (${sql}) d`)).rows[0]!.n);
    out.push({
      table: c.table,
      missing: missing.rowCount ? await count(`(${c.expected}) EXCEPT ALL (${c.actual})`) : 0,
      unexpected: unexpected.rowCount ? await count(`(${c.actual}) EXCEPT ALL (${c.expected})`) : 0,
      samples: { missing: missing.rows, unexpected: unexpected.rows },
    });
    onTable?.(c.table);
  }
  return out;
}
