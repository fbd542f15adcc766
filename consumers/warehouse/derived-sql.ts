/**
 * SELECTs defining derived rows from staging, shared by the per-key
 * recomputation (a WHERE on the affected keys) and the batch recomputation
 * (no WHERE). Sharing them keeps one definition of each column; what the
 * batch check then verifies is the incremental bookkeeping (which keys are
 * affected, in which order), which is where streaming goes wrong.
 */
export interface ClvThresholds {
  valueHigh: string;
  valueMedium: string;
  frequencyRepeat: number;
  frequencyLoyal: number;
}

/** docs/contract.md §3 defaults: high >= 1000, medium >= 250; 1 one_time, 2-4 repeat, >= 5 loyal. */
export const DEFAULT_CLV_THRESHOLDS: ClvThresholds = { valueHigh: '1000', valueMedium: '250', frequencyRepeat: 2, frequencyLoyal: 5 };

function checkThresholds(t: ClvThresholds): void {
  if (!/^\d+(\.\d+)?$/.test(t.valueHigh) || !/^\d+(\.\d+)?$/.test(t.valueMedium)) throw new Error('CLV value thresholds must be decimals');
  if (!Number.isInteger(t.frequencyRepeat) || !Number.isInteger(t.frequencyLoyal)) throw new Error('CLV frequency thresholds must be integers');
}

/** docs/contract.md §3 price tiers; an unknown price has no tier. */
export const PRICE_TIER = "CASE WHEN price IS NULL THEN NULL WHEN price < 25 THEN 'budget' WHEN price < 100 THEN 'mid' ELSE 'premium' END";

export const LINE_TOTAL = 'round(i.quantity * i.unit_price * (1 - i.discount), 2)';

/**
 * fact_orders rows, of the orders in `orderIds` (an SQL bigint[]
 * expression) or of all. customer_key: the latest version starting at or
 * before order_date (docs/contract.md: the version containing it; in a gap after a
 * delete, the last version before it); before the first version, the first
 * version. In the full refresh it is looked up once per order, not per
 * line (MATERIALIZED: inlined, the lookup ran on every line; for a few
 * orders inlining is faster, as it lets the join probe the lines' key),
 * and the orders are
 * reached through their keys (index probes), not by filtering every line
 * with `= ANY`, which the planner turned into sequential scans of staging.
 */
export function factOrdersSelectSql(stg: string, dimCustomers: string, orderIds: string | null = null): string {
  const orders = orderIds
    ? `(SELECT DISTINCT k FROM unnest(${orderIds}) AS k) ids(order_id) JOIN ${stg}.stg_orders o ON o.order_id = ids.order_id`
    : `${stg}.stg_orders o`;
  return `
    WITH o AS ${orderIds ? '' : 'MATERIALIZED'} (
      SELECT o.order_id, o.customer_id, o.order_date, o.status,
        to_char(o.order_date AT TIME ZONE 'UTC', 'YYYYMMDD')::int AS date_key,
        (SELECT d.customer_key FROM ${dimCustomers} d WHERE d.customer_id = o.customer_id
          ORDER BY (d.effective_date <= o.order_date) DESC,
                   CASE WHEN d.effective_date <= o.order_date THEN d.effective_date END DESC NULLS LAST,
                   d.effective_date ASC, d.expiration_date DESC
          LIMIT 1) AS customer_key
      FROM ${orders}
    )
    SELECT md5(i.order_id::text || '-' || i.product_id::text) AS order_item_key, i.order_id, i.product_id, o.customer_id,
      o.customer_key, md5(i.product_id::text) AS product_key, o.date_key,
      o.order_date, o.status, i.quantity, i.unit_price, i.discount,
      ${LINE_TOTAL} AS line_total,
      sum(${LINE_TOTAL}) OVER (PARTITION BY i.order_id) AS order_total
    FROM o JOIN ${stg}.stg_order_items i ON i.order_id = o.order_id`;
}

/** customer_lifetime_value rows (without `version`) over qualifying fact lines. */
export function clvSelectSql(fact: string, dimCustomers: string, t: ClvThresholds, where = 'true'): string {
  checkThresholds(t);
  // Aggregated first, then joined to the current version. For a few
  // customers the join is a LATERAL probe per customer: the planner
  // overestimates `= ANY` groups and would hash all of dim_customers per batch
  // (OFFSET 0 keeps it from flattening the LATERAL back into that join).
  const current = where === 'true'
    ? `LEFT JOIN ${dimCustomers} d ON d.customer_id = a.customer_id AND d.is_current`
    : `LEFT JOIN LATERAL (SELECT d.customer_key, d.customer_segment FROM ${dimCustomers} d WHERE d.customer_id = a.customer_id AND d.is_current OFFSET 0) d ON true`;
  return `
    SELECT a.customer_id, d.customer_key, d.customer_segment, a.total_orders, a.total_items, a.total_revenue,
      round(a.total_revenue / a.total_orders, 2) AS avg_order_value,
      a.first_order_date, a.last_order_date,
      floor(extract(epoch FROM a.last_order_date - a.first_order_date) / 86400)::int AS customer_lifetime_days,
      CASE WHEN a.total_revenue >= ${t.valueHigh} THEN 'high' WHEN a.total_revenue >= ${t.valueMedium} THEN 'medium' ELSE 'low' END AS value_segment,
      CASE WHEN a.total_orders >= ${t.frequencyLoyal} THEN 'loyal' WHEN a.total_orders >= ${t.frequencyRepeat} THEN 'repeat' ELSE 'one_time' END AS frequency_segment
    FROM (
      SELECT f.customer_id, count(DISTINCT f.order_id)::int AS total_orders, sum(f.quantity)::bigint AS total_items,
        sum(f.line_total) AS total_revenue, min(f.order_date) AS first_order_date, max(f.order_date) AS last_order_date
      FROM ${fact} f
      WHERE f.status NOT IN ('cancelled', 'returned') AND f.customer_id IS NOT NULL AND (${where})
      GROUP BY f.customer_id
    ) a ${current}`;
}

/**
 * order_fulfillment rows: each status's first setting time from the order
 * history; hours from placed_at. `orderIds` is an SQL bigint[] expression
 * restricting the orders (one grouped pass over their history), or null for all.
 */
export function fulfillmentSelectSql(stg: string, orderIds: string | null = null): string {
  const first = (s: string) => `min(h.updated_at) FILTER (WHERE h.status = '${s}') AS ${s}_at`;
  const only = (col: string) => (orderIds ? `AND ${col} = ANY(${orderIds})` : '');
  return `
    SELECT o.order_id, o.status, h.placed_at, h.shipped_at, h.delivered_at, h.cancelled_at, h.returned_at,
           round(extract(epoch FROM h.shipped_at - h.placed_at) / 3600, 2) AS hours_to_ship,
           round(extract(epoch FROM h.delivered_at - h.placed_at) / 3600, 2) AS hours_to_deliver
    FROM ${stg}.stg_orders o
    LEFT JOIN (
      SELECT h.order_id, ${['placed', 'shipped', 'delivered', 'cancelled', 'returned'].map(first).join(', ')}
      FROM ${stg}.order_status_changes h WHERE h.op <> 'd' ${only('h.order_id')}
      GROUP BY h.order_id
    ) h ON h.order_id = o.order_id
    WHERE true ${only('o.order_id')}`;
}

/** The Redis payload of every CLV row: the same fields the outbox carries. */
export function clvPayloadSql(an: string, where = 'true'): string {
  return clvPayloadFromSql(`${an}.customer_lifetime_value`, where);
}

/** clvPayloadSql over any relation with the customer_lifetime_value columns (a CTE's RETURNING rows). */
export function clvPayloadFromSql(relation: string, where = 'true'): string {
  return `
    SELECT v.customer_id::text AS customer_id, v.version::text AS version, jsonb_build_object(
      'customer_id', v.customer_id::text, 'customer_key', v.customer_key, 'customer_segment', v.customer_segment,
      'total_orders', v.total_orders::text, 'total_items', v.total_items::text, 'total_revenue', v.total_revenue::text,
      'avg_order_value', v.avg_order_value::text,
      'first_order_date', to_char(v.first_order_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'last_order_date', to_char(v.last_order_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'customer_lifetime_days', v.customer_lifetime_days::text, 'value_segment', v.value_segment,
      'frequency_segment', v.frequency_segment) AS payload
    FROM ${relation} v WHERE ${where}`;
}
