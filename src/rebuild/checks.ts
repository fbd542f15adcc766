import type pg from 'pg';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';

/**
 * dbt-style data tests over the warehouse tables (SPEC §3), run by `verify`.
 * Each check is a query returning the offending rows, one `key` column
 * naming the row (so a report can point at it) and optional detail columns;
 * zero rows means the check passes. They complement the batch recomputation
 * diff: that one says the tables equal their definitions, these say the
 * definitions' invariants hold, and they read better when something breaks
 * (a missing dimension row is named as such, not as two differing rows).
 */
export interface DataCheck {
  name: string;
  kind: 'unique' | 'not_null' | 'relationship' | 'scd2' | 'clv';
  table: string;
  sql: string;
}

const FOREVER = `'9999-12-31T00:00:00Z'::timestamptz`;

function unique(an: string, table: string, cols: string[]): DataCheck {
  const key = cols.length === 1 ? `${cols[0]}::text` : `concat_ws('/', ${cols.join(', ')})`;
  return {
    name: `unique ${table}(${cols.join(', ')})`, kind: 'unique', table,
    sql: `SELECT ${key} AS key, count(*)::int AS copies FROM ${an}.${table} GROUP BY ${cols.join(', ')} HAVING count(*) > 1`,
  };
}

function notNull(an: string, table: string, keyExpr: string, cols: string[]): DataCheck {
  return {
    name: `not null ${table}(${cols.join(', ')})`, kind: 'not_null', table,
    sql: `SELECT ${keyExpr} AS key, array_to_string(ARRAY[${cols.map((c) => `CASE WHEN ${c} IS NULL THEN '${c}' END`).join(', ')}], ',') AS null_columns
          FROM ${an}.${table} WHERE ${cols.map((c) => `${c} IS NULL`).join(' OR ')}`,
  };
}

export function dataChecks(schemas: WarehouseSchemas): DataCheck[] {
  const { stg, an } = quoted(schemas);
  return [
    unique(an, 'dim_date', ['date_key']),
    unique(an, 'dim_date', ['date_day']),
    unique(an, 'dim_products', ['product_key']),
    unique(an, 'dim_products', ['product_id']),
    unique(an, 'dim_customers', ['customer_key']),
    unique(an, 'dim_customers', ['customer_id', 'effective_date']),
    unique(an, 'fact_orders', ['order_item_key']),
    unique(an, 'fact_orders', ['order_id', 'product_id']),
    unique(an, 'customer_lifetime_value', ['customer_id']),
    unique(an, 'mart_sales', ['date_key', 'category']),
    unique(an, 'order_fulfillment', ['order_id']),
    notNull(an, 'dim_date', 'date_key::text', ['date_key', 'date_day']),
    notNull(an, 'dim_products', 'product_id::text', ['product_key', 'product_id']),
    notNull(an, 'dim_customers', 'customer_key', ['customer_key', 'customer_id', 'effective_date', 'expiration_date', 'is_current']),
    notNull(an, 'fact_orders', 'order_item_key', ['order_item_key', 'order_id', 'product_id', 'product_key', 'customer_id', 'date_key', 'order_date']),
    notNull(an, 'customer_lifetime_value', 'customer_id::text', ['customer_id', 'customer_key', 'total_revenue']),
    // category may be NULL: the group of products without one.
    notNull(an, 'mart_sales', `concat_ws('/', date_key, category)`, ['date_key']),
    notNull(an, 'order_fulfillment', 'order_id::text', ['order_id']),
    {
      name: 'fact_orders.product_key -> dim_products', kind: 'relationship', table: 'fact_orders',
      sql: `SELECT f.order_item_key AS key, f.product_key FROM ${an}.fact_orders f
            WHERE NOT EXISTS (SELECT 1 FROM ${an}.dim_products p WHERE p.product_key = f.product_key)`,
    },
    {
      name: 'fact_orders.date_key -> dim_date', kind: 'relationship', table: 'fact_orders',
      sql: `SELECT f.order_item_key AS key, f.date_key FROM ${an}.fact_orders f
            WHERE f.date_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ${an}.dim_date d WHERE d.date_key = f.date_key)`,
    },
    {
      // A line of a customer the warehouse knows (now or in history) must point at one of its versions.
      name: 'fact_orders.customer_key -> dim_customers', kind: 'relationship', table: 'fact_orders',
      sql: `SELECT f.order_item_key AS key, f.customer_id::text AS customer_id, f.customer_key FROM ${an}.fact_orders f
            WHERE (f.customer_key IS NOT NULL OR EXISTS (SELECT 1 FROM ${stg}.stg_customers c WHERE c.customer_id = f.customer_id)
                   OR EXISTS (SELECT 1 FROM ${an}.dim_customers d WHERE d.customer_id = f.customer_id))
              AND NOT EXISTS (SELECT 1 FROM ${an}.dim_customers d WHERE d.customer_key = f.customer_key AND d.customer_id = f.customer_id)`,
    },
    {
      // Versions tile time: each starts where the previous ended, except
      // after a delete (a later re-insert starts a new life, a gap is right).
      name: 'dim_customers versions neither overlap nor leave gaps', kind: 'scd2', table: 'dim_customers',
      sql: `SELECT customer_key AS key, customer_id::text AS customer_id, problem FROM (
              SELECT d.*, CASE
                WHEN d.expiration_date < d.effective_date THEN 'expires before it starts'
                WHEN d.next_eff IS NOT NULL AND d.next_eff < d.expiration_date THEN 'overlaps the next version'
                WHEN d.next_eff IS NOT NULL AND d.next_eff > d.expiration_date AND NOT EXISTS (
                  SELECT 1 FROM ${stg}.customer_changes h WHERE h.customer_id = d.customer_id AND h.op = 'd' AND h.committed_at = d.expiration_date)
                  THEN 'gap before the next version'
              END AS problem
              FROM (SELECT *, lead(effective_date) OVER (PARTITION BY customer_id ORDER BY effective_date) AS next_eff FROM ${an}.dim_customers) d
            ) x WHERE problem IS NOT NULL`,
    },
    {
      name: 'dim_customers current version iff expiration 9999-12-31T00:00:00Z', kind: 'scd2', table: 'dim_customers',
      sql: `SELECT customer_key AS key, customer_id::text AS customer_id, is_current, expiration_date::text AS expiration_date
            FROM ${an}.dim_customers WHERE is_current <> (expiration_date = ${FOREVER})`,
    },
    {
      name: 'exactly one current version per live customer, none for deleted ones', kind: 'scd2', table: 'dim_customers',
      sql: `SELECT coalesce(c.customer_id, d.customer_id)::text AS key, (c.customer_id IS NOT NULL) AS live, coalesce(d.n, 0) AS current_versions
            FROM ${stg}.stg_customers c
            FULL JOIN (SELECT customer_id, count(*)::int AS n FROM ${an}.dim_customers WHERE is_current GROUP BY customer_id) d ON d.customer_id = c.customer_id
            WHERE CASE WHEN c.customer_id IS NULL THEN coalesce(d.n, 0) <> 0 ELSE coalesce(d.n, 0) <> 1 END`,
    },
    {
      name: 'customer_lifetime_value rows exactly for customers with a qualifying line', kind: 'clv', table: 'customer_lifetime_value',
      sql: `SELECT coalesce(q.customer_id, v.customer_id)::text AS key,
                   CASE WHEN v.customer_id IS NULL THEN 'qualifying lines but no CLV row' ELSE 'CLV row without a qualifying line' END AS problem
            FROM (SELECT DISTINCT customer_id FROM ${an}.fact_orders WHERE status NOT IN ('cancelled', 'returned') AND customer_id IS NOT NULL) q
            FULL JOIN ${an}.customer_lifetime_value v ON v.customer_id = q.customer_id
            WHERE q.customer_id IS NULL OR v.customer_id IS NULL`,
    },
  ];
}

export interface CheckResult {
  name: string;
  kind: DataCheck['kind'];
  table: string;
  failures: number;
  samples: Array<Record<string, unknown>>;
  ms?: number;
}

export async function runDataChecks(client: pg.ClientBase, schemas: WarehouseSchemas, sampleSize = 5, onCheck?: (name: string) => void): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const c of dataChecks(schemas)) {
    const t0 = Date.now();
    const { rows } = await client.query<{ n: number; samples: Array<Record<string, unknown>> | null }>(
      // The offending rows once (usually none), counted and sampled from there: was two evaluations of each check.
      `WITH x AS MATERIALIZED (${c.sql})
       SELECT (SELECT count(*)::int FROM x) AS n, (SELECT jsonb_agg(s) FROM (SELECT * FROM x ORDER BY key LIMIT ${Number(sampleSize)}) s) AS samples`);
    out.push({ name: c.name, kind: c.kind, table: c.table, failures: rows[0]!.n, samples: rows[0]!.samples ?? [], ms: Date.now() - t0 });
    onCheck?.(c.name);
  }
  return out;
}
