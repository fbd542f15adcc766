import { renderModel } from './models.ts';

/**
 * The SELECTs defining derived rows from staging, rendered from the model
 * files (models/<table>.sql, see models.ts) for the per-key recomputation
 * (filtered on the affected keys), the full refresh and verify (no
 * filter). One definition of each table; what verify then checks is the
 * incremental bookkeeping (which keys are affected, in which order), which
 * is where streaming goes wrong.
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

/** dim_products rows, of the products in `productIds` (an SQL bigint[] expression) or of all. */
export function dimProductsSelectSql(stg: string, productIds: string | null = null): string {
  return renderModel('dim_products', { stg, filters: productIds ? { products: productIds } : {} });
}

/** dim_customers versions of every customer, set-based (the per-key form is the TypeScript walk of the same rules). */
export function dimCustomersSelectSql(stg: string): string {
  return renderModel('dim_customers', { stg });
}

/**
 * fact_orders rows, of the orders in `orderIds` (an SQL bigint[]
 * expression) or of all, with customer_key looked up in `dimCustomers`
 * (the table, or verify's recomputation of it).
 */
export function factOrdersSelectSql(stg: string, dimCustomers: string, orderIds: string | null = null): string {
  return renderModel('fact_orders', { stg, refs: { dim_customers: dimCustomers }, filters: orderIds ? { orders: orderIds } : {} });
}

/** customer_lifetime_value rows (without `version`) over qualifying fact lines, of the customers in `customerIds` or of all. */
export function clvSelectSql(fact: string, dimCustomers: string, t: ClvThresholds, customerIds: string | null = null): string {
  checkThresholds(t);
  return renderModel('customer_lifetime_value', {
    stg: '', refs: { fact_orders: fact, dim_customers: dimCustomers }, filters: customerIds ? { customers: customerIds } : {},
    vars: { value_high: t.valueHigh, value_medium: t.valueMedium, frequency_loyal: t.frequencyLoyal, frequency_repeat: t.frequencyRepeat },
  });
}

/**
 * mart_sales cells over `fact` and `dimProducts`: all of them, what the
 * orders in `orders.orderIds` contribute to each cell, or the whole cells
 * named by `cells` (an SQL predicate over f.date_key and p.category).
 */
export function martSalesSelectSql(fact: string, dimProducts: string, only: { orderIds?: string; cells?: string } = {}): string {
  const filters: Record<string, string> = {};
  if (only.orderIds) filters.orders = only.orderIds;
  if (only.cells) filters.cells = only.cells;
  return renderModel('mart_sales', { stg: '', refs: { fact_orders: fact, dim_products: dimProducts }, filters });
}

/** order_fulfillment rows, of the orders in `orderIds` (an SQL bigint[] expression) or of all. */
export function fulfillmentSelectSql(stg: string, orderIds: string | null = null): string {
  return renderModel('order_fulfillment', { stg, filters: orderIds ? { orders: orderIds } : {} });
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
