import type pg from 'pg';
import { clvPayloadFromSql, DEFAULT_CLV_THRESHOLDS, type ClvThresholds } from './derived-sql.ts';
import { renderBlock, renderModel } from './models.ts';
import type { OutboxRow } from '../../src/sinks/redis/clv-redis.ts';

/**
 * The CLV step of the per-batch recomputation, as a delta.
 *
 * A customer's totals are sums over their qualifying fact lines (the
 * `totals` block of models/customer_lifetime_value.sql), and a batch
 * changes fact lines only of its own orders (a re-key changes customer_key,
 * which no total reads). So the new totals are the stored ones, minus what
 * the batch's orders contributed before (read before staging changes),
 * plus what they contribute after (read after fact_orders is rebuilt):
 * the cost follows the batch, not the customer's history, which the exact
 * form re-aggregated for every affected customer in every batch.
 *
 * Both contributions come from the fact table inside the batch's
 * transaction, never from the messages: a redelivered batch (offsets are
 * stored in the same transaction, src/sinks/postgres/batch-tx.ts) changes
 * no fact line, so its before and after are equal and it adds nothing.
 *
 * Counts and sums subtract exactly; first/last order date do not when the
 * lines taken away held the stored extreme and nothing at least as far
 * replaces it. Those customers, and any whose stored row disagrees with
 * what is subtracted (which the invariant rules out, so it is a guard), get
 * the exact per-key form in the same statement.
 */
export interface ClvContribution {
  customerId: string;
  orders: number;
  items: string | null;
  revenue: string | null;
  /** ISO-8601 UTC instants with microseconds. */
  first: string;
  last: string;
}

const ISO = (c: string) => `to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** What the qualifying fact lines of the orders in $1 add to each customer's totals now. */
export async function clvContribution(client: pg.ClientBase, an: string, orders: string[]): Promise<ClvContribution[]> {
  if (orders.length === 0) return [];
  const totals = renderBlock('customer_lifetime_value', 'totals', { stg: '', refs: { fact_orders: `${an}.fact_orders` }, filters: { orders: '$1::bigint[]' } });
  const { rows } = await client.query<{ customer_id: string; total_orders: number; total_items: string | null; total_revenue: string | null; first: string; last: string }>(
    `SELECT customer_id::text, total_orders, total_items::text, total_revenue::text, ${ISO('first_order_date')} AS first, ${ISO('last_order_date')} AS last
     FROM (${totals}) b`, [orders]);
  return rows.map((r) => ({ customerId: r.customer_id, orders: r.total_orders, items: r.total_items, revenue: r.total_revenue, first: r.first, last: r.last }));
}

const CLV_COLUMNS = ['customer_id', 'customer_key', 'customer_segment', 'total_orders', 'total_items', 'total_revenue', 'avg_order_value',
  'first_order_date', 'last_order_date', 'customer_lifetime_days', 'value_segment', 'frequency_segment'];

/**
 * The customer_lifetime_value rows (model columns) of the customers in $1:
 * stored totals - before ($3..$8) + after (the lines of the orders in $9
 * now), or the exact form for the customers the delta cannot settle.
 * Customers left without a qualifying line get no row.
 */
export function clvDeltaSql(an: string, t: ClvThresholds): string {
  const fact = `${an}.fact_orders`;
  const after = renderBlock('customer_lifetime_value', 'totals', { stg: '', refs: { fact_orders: fact }, filters: { orders: '$9::bigint[]' } });
  const exact = renderBlock('customer_lifetime_value', 'totals', {
    stg: '', refs: { fact_orders: fact }, filters: { customers: 'ARRAY(SELECT customer_id FROM x WHERE exact)' },
  });
  const sum = (c: string) => `coalesce(t_${c}, 0) - coalesce(b_${c}, 0) + coalesce(a_${c}, 0)`;
  const cols = (p: string, rel: string) => ['orders', 'items', 'revenue', 'first', 'last'].map((c, i) =>
    `${rel}.${['total_orders', 'total_items', 'total_revenue', 'first_order_date', 'last_order_date'][i]} AS ${p}_${c}`).join(', ');
  const totals = `
    SELECT customer_id, (${sum('orders')})::int AS total_orders, (${sum('items')})::bigint AS total_items, ${sum('revenue')} AS total_revenue,
           least(t_first, a_first) AS first_order_date, greatest(t_last, a_last) AS last_order_date
    FROM x WHERE NOT exact AND ${sum('orders')} > 0
    UNION ALL
    ${exact}`;
  const model = renderModel('customer_lifetime_value', {
    stg: '', refs: { dim_customers: `${an}.dim_customers` }, blocks: { totals },
    vars: { value_high: t.valueHigh, value_medium: t.valueMedium, frequency_loyal: t.frequencyLoyal, frequency_repeat: t.frequencyRepeat },
  });
  return `
    k AS MATERIALIZED (SELECT DISTINCT customer_id FROM unnest($1::bigint[]) AS k(customer_id)),
    b AS MATERIALIZED (
      SELECT * FROM unnest($3::bigint[], $4::int[], $5::bigint[], $6::numeric[], $7::timestamptz[], $8::timestamptz[])
        AS b(customer_id, total_orders, total_items, total_revenue, first_order_date, last_order_date)),
    a AS MATERIALIZED (${after}),
    x AS MATERIALIZED (
      SELECT c.*,
        -- the delta settles a customer unless lines taken away held an extreme nothing replaces, or the stored row disagrees
        coalesce(b_orders IS NOT NULL AND (
             t_orders IS NULL OR b_orders > t_orders OR b_first < t_first OR b_last > t_last OR b_items IS NULL OR b_revenue IS NULL
          OR (b_first = t_first AND NOT coalesce(a_first <= b_first, false))
          OR (b_last = t_last AND NOT coalesce(a_last >= b_last, false))), true)
        OR coalesce(a_orders IS NOT NULL AND (a_items IS NULL OR a_revenue IS NULL), true) AS exact
      FROM (
        SELECT k.customer_id, ${cols('t', 't')}, ${cols('b', 'b')}, ${cols('a', 'a')}
        FROM k LEFT JOIN ${an}.customer_lifetime_value t ON t.customer_id = k.customer_id
        LEFT JOIN b ON b.customer_id = k.customer_id LEFT JOIN a ON a.customer_id = k.customer_id
      ) c
    ),
    n AS MATERIALIZED (${model})`;
}

/**
 * Writes the CLV rows of `customers` (delta form, see clvDeltaSql) and an
 * outbox entry for each row that changed or went away; returns the entries.
 */
export async function writeClv(
  client: pg.ClientBase,
  q: { an: string; meta: string },
  customers: string[],
  orders: string[],
  before: readonly ClvContribution[],
  opts: { redisKeyPrefix: string; thresholds?: ClvThresholds },
): Promise<OutboxRow[]> {
  if (customers.length === 0) return [];
  const { an, meta } = q;
  // Only customers whose figures changed get a new version and an outbox entry.
  const rest = CLV_COLUMNS.slice(1);
  const { rows } = await client.query<OutboxRow>(
    `WITH ${clvDeltaSql(an, opts.thresholds ?? DEFAULT_CLV_THRESHOLDS)},
     gone AS (
       -- joined to k, so each customer is a probe (= ANY of a few hundred ids scanned the whole table)
       DELETE FROM ${an}.customer_lifetime_value t USING k
       WHERE t.customer_id = k.customer_id AND NOT EXISTS (SELECT 1 FROM n WHERE n.customer_id = k.customer_id)
       RETURNING t.customer_id
     ),
     up AS (
       INSERT INTO ${an}.customer_lifetime_value AS t (${CLV_COLUMNS.join(', ')}, version)
       SELECT ${CLV_COLUMNS.map((c) => `n.${c}`).join(', ')}, nextval('${meta}.clv_version_seq') FROM n
       ON CONFLICT (customer_id) DO UPDATE SET ${rest.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}, version = EXCLUDED.version
       WHERE (${rest.map((c) => `t.${c}`).join(', ')}) IS DISTINCT FROM (${rest.map((c) => `EXCLUDED.${c}`).join(', ')})
       RETURNING t.*
     )
     INSERT INTO ${meta}.redis_outbox (key_prefix, customer_id, version, payload)
     SELECT $2, p.customer_id::bigint, p.version::bigint, p.payload FROM (${clvPayloadFromSql('up')}) p
     UNION ALL
     SELECT $2, g.customer_id, nextval('${meta}.clv_version_seq'), NULL FROM gone g
     RETURNING id, customer_id, version, payload`,
    [customers, opts.redisKeyPrefix,
      before.map((b) => b.customerId), before.map((b) => b.orders), before.map((b) => b.items), before.map((b) => b.revenue),
      before.map((b) => b.first), before.map((b) => b.last), orders]);
  return rows;
}
