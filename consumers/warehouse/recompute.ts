import type pg from 'pg';
import type { RowChange } from '../../src/consumer/envelope.ts';
import { scd2Versions, type CustomerChange } from '../../src/transforms/scd2.ts';
import { formatInstantUs } from '../../src/transforms/time.ts';
import {
  dimProductsSelectSql, factOrdersSelectSql, fulfillmentSelectSql, martSalesSelectSql, type ClvThresholds,
} from './derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import type { OutboxRow } from '../../src/sinks/redis/clv-redis.ts';
import { clvContribution, writeClv, type ClvContribution } from './recompute-clv.ts';

/**
 * Per-affected-key recomputation of the derived tables from staging
 * (docs/architecture.md, "Consumers"). Every derived row of an affected key
 * is deleted and rebuilt from staging, never incremented, so the result
 * does not depend on the order in which topics deliver.
 */
export interface DirectKeys {
  customers: Set<string>;
  /** Customers with new history rows: their SCD2 versions must be rebuilt. */
  historyCustomers: Set<string>;
  orders: Set<string>;
  products: Set<string>;
  orderDates: string[];
}

export function directKeys(changes: readonly RowChange[]): DirectKeys {
  const k: DirectKeys = { customers: new Set(), historyCustomers: new Set(), orders: new Set(), products: new Set(), orderDates: [] };
  for (const ch of changes) {
    for (const img of [ch.before, ch.after]) {
      if (!img) continue;
      switch (ch.table) {
        case 'customers':
          k.customers.add(img.customer_id!);
          k.historyCustomers.add(img.customer_id!);
          break;
        case 'orders':
          k.orders.add(img.order_id!);
          if (img.customer_id) k.customers.add(img.customer_id);
          if (img.order_date) k.orderDates.push(img.order_date);
          break;
        case 'order_items':
          // Only the order: a line's mart cell is found through its order. Adding
          // its product would rescan every line of popular products per batch.
          k.orders.add(img.order_id!);
          break;
        case 'products':
          k.products.add(img.product_id!);
          break;
      }
    }
  }
  return k;
}

/**
 * mart_sales cells of the lines of the given orders ($1) and products ($2); a UNION so each side uses its index.
 * A product without a category puts its lines in the day's NULL-category cell, as GROUP BY does
 * (docs/contract.md#mart_sales), so cells are matched with IS NOT DISTINCT FROM throughout.
 */
function cellsSql(an: string): string {
  const side = (cond: string) => `SELECT f.date_key, p.category FROM ${an}.fact_orders f JOIN ${an}.dim_products p ON p.product_id = f.product_id
     WHERE ${cond} AND f.date_key IS NOT NULL`;
  return `${side('f.order_id = ANY($1::bigint[])')} UNION ${side('f.product_id = ANY($2::bigint[])')}`;
}

/** What some orders' qualifying lines add to each mart_sales cell; money and counts as exact text. */
export interface MartContribution {
  dateKey: number;
  /** Null: the cell of the day's products without a category. */
  category: string | null;
  orders: string;
  units: string;
  revenue: string;
}

export interface PreState {
  /** The affected orders' contribution to mart_sales before the change, to subtract. */
  martBefore: MartContribution[];
  /** The affected products' category in dim_products before the change (absent: no row). */
  productCategory: Map<string, string | null>;
  /** What the affected orders' qualifying lines added to each customer's CLV totals before the change. */
  clvBefore: ClvContribution[];
}

/**
 * The affected orders' ($1) contribution to mart_sales: the mart_sales
 * model restricted to their lines. Orders are disjoint, so a cell's
 * distinct-order count, units and revenue are sums over orders and the
 * change of a cell is exactly contribution-after minus
 * contribution-before: a batch touches its own orders' lines instead of
 * re-aggregating every line of the day (which grew the cost of each batch
 * through the day under steady traffic).
 */
function martContributionSql(an: string): string {
  return martSalesSelectSql(`${an}.fact_orders`, `${an}.dim_products`, { orderIds: '$1::bigint[]' });
}

const arr = (s: Iterable<string>) => [...s];

const FACT_COLUMNS = ['order_item_key', 'order_id', 'product_id', 'customer_id', 'customer_key', 'product_key', 'date_key', 'order_date',
  'status', 'quantity', 'unit_price', 'discount', 'line_total', 'order_total'];

const FULFILLMENT_COLUMNS = ['order_id', 'status', 'placed_at', 'shipped_at', 'delivered_at', 'cancelled_at', 'returned_at', 'hours_to_ship', 'hours_to_deliver'];

/**
 * Makes the rows of `table` (alias t) matching `scope` equal to the rows `select`
 * returns (same column order as `columns`): rows no longer selected are
 * deleted, new ones inserted, changed ones updated, and identical ones left
 * alone. Rewriting identical rows (the old delete-and-insert) cost one heap
 * and five index writes per fact line every time an order's status moved.
 */
function upsertRowsSql(table: string, columns: string[], key: string[], scope: string, select: string): string {
  const rest = columns.filter((c) => !key.includes(c));
  const keyMatch = key.map((k) => `n.${k} = t.${k}`).join(' AND ');
  return `
    WITH n AS MATERIALIZED (${select}),
    gone AS (DELETE FROM ${table} t WHERE ${scope} AND NOT EXISTS (SELECT 1 FROM n WHERE ${keyMatch}))
    INSERT INTO ${table} AS t (${columns.join(', ')}) SELECT ${columns.map((c) => `n.${c}`).join(', ')} FROM n
    ON CONFLICT (${key.join(', ')}) DO UPDATE SET ${rest.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}
    WHERE (${rest.map((c) => `t.${c}`).join(', ')}) IS DISTINCT FROM (${rest.map((c) => `EXCLUDED.${c}`).join(', ')})`;
}

/** Reads, before staging changes, what the affected keys contribute now: their mart cells and the customers their lines belong to. */
export async function captureBefore(client: pg.ClientBase, schemas: WarehouseSchemas, k: DirectKeys): Promise<PreState> {
  const { an } = quoted(schemas);
  const productCategory = new Map<string, string | null>();
  if (k.products.size > 0) {
    const r = await client.query<{ product_id: string; category: string | null }>(
      `SELECT product_id, category FROM ${an}.dim_products WHERE product_id = ANY($1::bigint[])`, [arr(k.products)]);
    for (const x of r.rows) productCategory.set(x.product_id, x.category);
  }
  if (k.orders.size === 0) return { martBefore: [], productCategory, clvBefore: [] };
  const r = await client.query<{ date_key: number; category: string | null; orders: number; units: string; revenue: string }>(
    martContributionSql(an), [arr(k.orders)]);
  const martBefore = r.rows.map((x) => ({ dateKey: x.date_key, category: x.category, orders: String(x.orders), units: x.units, revenue: x.revenue }));
  // A customer whose lines of these orders do not count (cancelled, returned) keeps their CLV: only contributions matter.
  return { martBefore, productCategory, clvBefore: await clvContribution(client, an, arr(k.orders)) };
}

/** A customer whose orders may get another customer_key: those dated at or after `fromUs` (null: all of them). */
export interface Rekey {
  customerId: string;
  fromUs: bigint | null;
}

/**
 * Which of a customer's orders a change of their versions can re-key. An
 * order's customer_key is the version with the latest start at or before
 * its date, else the first version (models/fact_orders.sql): it depends on
 * the set of start dates alone (the key is a hash of customer and start).
 * When the starts that came or went are all later than an unchanged first
 * start, an order dated before the earliest of them sees the same
 * versions up to its date, so keeps its key. A segment change starts a
 * version now, so this re-keys the customer's recent orders instead of
 * their whole history; a change of the first start (or of having versions
 * at all) re-keys every order. Null when nothing can change.
 */
export function rekeyFrom(customerId: string, before: readonly bigint[], after: readonly bigint[]): Rekey | null {
  const b = new Set(before);
  const a = new Set(after);
  const changed = [...b].filter((x) => !a.has(x)).concat([...a].filter((x) => !b.has(x)));
  if (changed.length === 0) return null;
  const min = (xs: Iterable<bigint>) => { let m: bigint | null = null; for (const x of xs) if (m === null || x < m) m = x; return m; };
  const firstBefore = min(b);
  if (firstBefore === null || firstBefore !== min(a)) return { customerId, fromUs: null };
  return { customerId, fromUs: min(changed) };
}

/**
 * Rebuilds the SCD2 versions of `customers`; returns those whose version
 * starts changed, with the order date from which their orders can get a
 * different point-in-time customer_key (rekeyFrom). An email change alone,
 * or a moved expiration, returns nothing.
 */
async function rebuildDimCustomers(client: pg.ClientBase, stg: string, an: string, customers: string[]): Promise<Rekey[]> {
  if (customers.length === 0) return [];
  const { rows: old } = await client.query<{ customer_id: string; eff: string }>(
    `SELECT customer_id, (extract(epoch FROM effective_date) * 1000000)::bigint AS eff
     FROM ${an}.dim_customers WHERE customer_id = ANY($1::bigint[])`, [customers]);
  const before = new Map<string, bigint[]>();
  for (const r of old) before.set(r.customer_id, [...(before.get(r.customer_id) ?? []), BigInt(r.eff)]);
  const { rows } = await client.query<{ customer_id: string; seq: string; lsn: string; op: CustomerChange['op']; upd: string | null; com: string; seg: string | null; email: string | null; full_name: string | null }>(
    `SELECT customer_id, seq, lsn, op, (extract(epoch FROM updated_at) * 1000000)::bigint AS upd, (extract(epoch FROM committed_at) * 1000000)::bigint AS com,
            customer_segment AS seg, email_normalized AS email, full_name
     FROM ${stg}.customer_changes WHERE customer_id = ANY($1::bigint[]) ORDER BY customer_id, seq, lsn`, [customers]);
  const history = new Map<string, CustomerChange[]>();
  for (const r of rows) {
    const list = history.get(r.customer_id) ?? [];
    list.push({ seq: BigInt(r.seq), lsn: BigInt(r.lsn), op: r.op, updatedUs: r.upd === null ? null : BigInt(r.upd), committedUs: BigInt(r.com), segment: r.seg, email: r.email, fullName: r.full_name });
    history.set(r.customer_id, list);
  }
  const versions = [...history].flatMap(([id, list]) => scd2Versions(id, list));
  const after = new Map<string, bigint[]>();
  for (const v of versions) after.set(v.customerId, [...(after.get(v.customerId) ?? []), v.effectiveUs]);
  const changed = customers.map((c) => rekeyFrom(c, before.get(c) ?? [], after.get(c) ?? [])).filter((r): r is Rekey => r !== null);
  await client.query(`DELETE FROM ${an}.dim_customers WHERE customer_id = ANY($1::bigint[])`, [customers]);
  if (versions.length === 0) return changed;
  await client.query(
    `INSERT INTO ${an}.dim_customers (customer_key, customer_id, email, full_name, customer_segment, effective_date, expiration_date, is_current)
     SELECT customer_key, customer_id, email, full_name, customer_segment, effective_date, expiration_date, is_current
     FROM jsonb_to_recordset($1::jsonb) AS r(customer_key text, customer_id bigint, email text, full_name text, customer_segment text,
          effective_date timestamptz, expiration_date timestamptz, is_current boolean)`,
    [JSON.stringify(versions.map((v) => ({
      customer_key: v.customerKey, customer_id: v.customerId, email: v.email, full_name: v.fullName, customer_segment: v.segment,
      effective_date: formatInstantUs(v.effectiveUs), expiration_date: formatInstantUs(v.expirationUs), is_current: v.isCurrent,
    })))]);
  return changed;
}

export interface RecomputeResult {
  /** Customers whose CLV row was rebuilt (and who got an outbox entry). */
  clvCustomers: number;
  factOrders: number;
  /** The outbox entries written, to be published to Redis once the transaction commits. */
  outbox: OutboxRow[];
}

export async function recomputeAffected(
  client: pg.ClientBase,
  schemas: WarehouseSchemas,
  k: DirectKeys,
  pre: PreState,
  opts: { redisKeyPrefix: string; thresholds?: ClvThresholds; lap?: (stage: string) => void },
): Promise<RecomputeResult> {
  const { stg, an, meta } = quoted(schemas);
  const lap = opts.lap ?? (() => {});
  const products = arr(k.products);
  // Products whose lines move between mart_sales cells: category changed, or the product appeared or went away.
  // A price or name change moves nothing (line totals use the line's own unit_price).
  const moved: string[] = [];
  if (products.length > 0) {
    await client.query(`DELETE FROM ${an}.dim_products WHERE product_id = ANY($1::bigint[])`, [products]);
    const { rows: now } = await client.query<{ product_id: string; category: string | null }>(
      `INSERT INTO ${an}.dim_products (product_key, product_id, product_name, category, price, rating, price_tier)
       ${dimProductsSelectSql(stg, '$1::bigint[]')}
       RETURNING product_id, category`, [products]);
    const after = new Map(now.map((r) => [r.product_id, r.category]));
    for (const id of products) {
      if (pre.productCategory.has(id) !== after.has(id) || pre.productCategory.get(id) !== after.get(id)) moved.push(id);
    }
  }
  const historyCustomers = arr(k.historyCustomers);
  lap('tx.dimProducts');
  const rekeyedCustomers = await rebuildDimCustomers(client, stg, an, historyCustomers);
  lap('tx.dimCustomers');

  if (k.orderDates.length > 0) {
    // Contiguous extension so the calendar has no holes; the default range is seeded by the migration.
    const sorted = [...k.orderDates].sort();
    await client.query(
      `INSERT INTO ${an}.dim_date
       SELECT * FROM ${an}.dim_date_rows(
         LEAST(($1::timestamptz AT TIME ZONE 'UTC')::date, (SELECT min(date_day) FROM ${an}.dim_date)),
         GREATEST(($2::timestamptz AT TIME ZONE 'UTC')::date, (SELECT max(date_day) FROM ${an}.dim_date)))
       WHERE ($1::timestamptz AT TIME ZONE 'UTC')::date < (SELECT min(date_day) FROM ${an}.dim_date)
          OR ($2::timestamptz AT TIME ZONE 'UTC')::date > (SELECT max(date_day) FROM ${an}.dim_date)
       ON CONFLICT DO NOTHING`, [sorted[0], sorted[sorted.length - 1]]);
  }

  lap('tx.dimDate');
  // Orders whose lines must be rebuilt: the directly changed ones, and every
  // order of a customer whose version boundaries changed (point-in-time customer_key).
  // (A null order_date takes the first version: re-keyed only with every order, as `>=` leaves it out.)
  const { rows: custOrders } = rekeyedCustomers.length === 0 ? { rows: [] } : await client.query<{ order_id: string }>(
    `SELECT o.order_id FROM ${stg}.stg_orders o JOIN unnest($1::bigint[], $2::timestamptz[]) AS c(customer_id, from_date) ON o.customer_id = c.customer_id
     WHERE c.from_date IS NULL OR o.order_date >= c.from_date`,
    [rekeyedCustomers.map((r) => r.customerId), rekeyedCustomers.map((r) => (r.fromUs === null ? null : formatInstantUs(r.fromUs)))]);
  const factOrders = [...new Set([...k.orders, ...custOrders.map((r) => r.order_id)])];
  if (factOrders.length > 0) {
    await client.query(upsertRowsSql(`${an}.fact_orders`, FACT_COLUMNS, ['order_item_key'], 't.order_id = ANY($1::bigint[])',
      factOrdersSelectSql(stg, `${an}.dim_customers`, '$1::bigint[]')), [factOrders]);
  }

  lap('tx.factOrders');
  if (moved.length === 0 && k.orders.size > 0) {
    await applyMartDelta(client, an, arr(k.orders), pre.martBefore);
  } else if (moved.length > 0) {
    // Rebuild whole every cell a line entered or left: the affected orders'
    // cells before and after, and the cells of the moved products' lines
    // under their old and their new category.
    type Cell = [number, string | null];
    const { rows: after } = await client.query<{ date_key: number; category: string | null }>(
      cellsSql(an), [arr(k.orders), moved]);
    const { rows: movedDays } = await client.query<{ date_key: number; product_id: string }>(
      `SELECT DISTINCT date_key, product_id FROM ${an}.fact_orders WHERE product_id = ANY($1::bigint[]) AND date_key IS NOT NULL`, [moved]);
    // A product absent before had no cell; one present with a null category had the NULL cell.
    const old = movedDays.flatMap((r) => (pre.productCategory.has(r.product_id) ? [[r.date_key, pre.productCategory.get(r.product_id) ?? null] as Cell] : []));
    const cells = new Map<string, Cell>();
    for (const c of [...pre.martBefore.map((m) => [m.dateKey, m.category] as Cell), ...old, ...after.map((r) => [r.date_key, r.category] as Cell)]) {
      cells.set(JSON.stringify(c), c);
    }
    const dks = [...cells.values()].map((c) => c[0]);
    const cats = [...cells.values()].map((c) => c[1]);
    await client.query(
      `DELETE FROM ${an}.mart_sales m USING unnest($1::int[], $2::text[]) AS c(date_key, category)
       WHERE m.date_key = c.date_key AND m.category IS NOT DISTINCT FROM c.category`, [dks, cats]);
    await client.query(
      `INSERT INTO ${an}.mart_sales (date_key, category, orders, units, revenue)
       ${martSalesSelectSql(`${an}.fact_orders`, `${an}.dim_products`, {
         cells: 'EXISTS (SELECT 1 FROM unnest($1::int[], $2::text[]) AS c(date_key, category) WHERE c.date_key = f.date_key AND c.category IS NOT DISTINCT FROM p.category)',
       })}`, [dks, cats]);
  }

  lap('tx.martSales');
  const { rows: orderCust } = await client.query<{ customer_id: string }>(
    `SELECT DISTINCT customer_id FROM ${stg}.stg_orders WHERE order_id = ANY($1::bigint[]) AND customer_id IS NOT NULL`, [arr(k.orders)]);
  const clvCustomers = [...new Set([...k.customers, ...pre.clvBefore.map((b) => b.customerId), ...orderCust.map((r) => r.customer_id)])];
  const outbox = await writeClv(client, { an, meta }, clvCustomers, arr(k.orders), pre.clvBefore, opts);

  lap('tx.clv');
  if (k.orders.size > 0) {
    await client.query(upsertRowsSql(`${an}.order_fulfillment`, FULFILLMENT_COLUMNS, ['order_id'], 't.order_id = ANY($1::bigint[])',
      fulfillmentSelectSql(stg, '$1::bigint[]')), [arr(k.orders)]);
  }
  lap('tx.fulfillment');
  return { clvCustomers: clvCustomers.length, factOrders: factOrders.length, outbox };
}

/**
 * Adds the affected orders' new contribution minus their old one to mart_sales; drops cells left without orders.
 * ON CONFLICT finds the NULL-category cell too: the cell key is UNIQUE NULLS NOT DISTINCT (migration 0050).
 */
async function applyMartDelta(client: pg.ClientBase, an: string, orders: string[], before: MartContribution[]): Promise<void> {
  const { rows } = await client.query<{ date_key: number; category: string | null; orders: number }>(
    `WITH pre AS (
       SELECT * FROM unnest($2::int[], $3::text[], $4::int[], $5::bigint[], $6::numeric[]) AS r(date_key, category, orders, units, revenue)
     ), post AS (${martContributionSql(an)}),
     d AS (
       SELECT date_key, category, sum(orders)::int AS orders, sum(units)::bigint AS units, sum(revenue) AS revenue
       FROM (SELECT * FROM post UNION ALL SELECT date_key, category, -orders, -units, -revenue FROM pre) x
       GROUP BY date_key, category
     )
     INSERT INTO ${an}.mart_sales AS m (date_key, category, orders, units, revenue)
     SELECT * FROM d WHERE orders <> 0 OR units <> 0 OR revenue <> 0
     ON CONFLICT (date_key, category) DO UPDATE
       SET orders = m.orders + EXCLUDED.orders, units = m.units + EXCLUDED.units, revenue = m.revenue + EXCLUDED.revenue
     RETURNING m.date_key, m.category, m.orders`,
    [orders, before.map((b) => b.dateKey), before.map((b) => b.category), before.map((b) => b.orders), before.map((b) => b.units), before.map((b) => b.revenue)]);
  const empty = rows.filter((r) => r.orders === 0);
  if (empty.length > 0) {
    await client.query(
      `DELETE FROM ${an}.mart_sales m USING unnest($1::int[], $2::text[]) AS c(date_key, category)
       WHERE m.date_key = c.date_key AND m.category IS NOT DISTINCT FROM c.category AND m.orders = 0`,
      [empty.map((r) => r.date_key), empty.map((r) => r.category)]);
  }
}
