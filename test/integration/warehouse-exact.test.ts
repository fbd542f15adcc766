import { createHash } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateEnvelope } from '../../src/consumer/envelope.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { applyBatch } from '../../consumers/warehouse/apply.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { clvSelectSql, DEFAULT_CLV_THRESHOLDS } from '../../consumers/warehouse/derived-sql.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { avroType, envelopeSchema, envelopeValue, type FixtureEvent, type FixtureRow } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Hand-computed figures for a small story, so the shared column definitions
 * (line_total rounding, point-in-time customer_key, CLV retraction and
 * restoration, fulfillment hours) are checked against numbers, not only
 * against the batch recomputation that shares them.
 */
const md5 = (s: string) => createHash('md5').update(s).digest('hex');

describe('warehouse figures to the cent', () => {
  const id = uniqueId('wh_exact');
  const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  let pool: pg.Pool;
  let lsn = 1000n;
  const offsets = new Map<string, number>();

  async function send(table: FixtureEvent['table'], op: 'c' | 'u' | 'd', row: FixtureRow, before: FixtureRow | null = null): Promise<void> {
    lsn += 10n;
    const ev: FixtureEvent = { table, op, after: op === 'd' ? null : row, before: op === 'd' ? row : before, lsn, commitTime: String(row.updated_at ?? '2024-03-20T00:00:00.000000Z') };
    const t = avroType(envelopeSchema('shop', table));
    const change = validateEnvelope(t.fromBuffer(t.toBuffer(envelopeValue(ev))));
    const off = offsets.get(table) ?? 0;
    offsets.set(table, off + 1);
    await applyBatch(pool, schemas, { group: 'g', topic: table, partition: 0, messages: [{ offset: String(off), change }], deadLetters: [] }, { redisKeyPrefix: '' });
  }
  const q = async (sql: string) => (await pool.query(sql.replaceAll('AN.', `"${schemas.analytics}".`))).rows;

  beforeAll(async () => {
    pool = createWarehousePool(stackEnv.warehouseUrl);
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    await pool.end();
  });

  it('rounds lines half away from zero, keys orders to the version of their date even when the segment change is late, and retracts/restores CLV', async () => {
    const c1 = { customer_id: 1, email: ' Ann@Shop.IO ', first_name: 'Ann', last_name: 'Lee', customer_segment: 'bronze', created_at: '2024-03-01T10:00:00.000001Z', updated_at: '2024-03-01T10:00:00.000001Z' };
    await send('customers', 'c', c1);
    await send('products', 'c', { product_id: 10, product_name: 'Book', category: 'books', price: '19.99', rating: '4.50', updated_at: '2024-01-01T00:00:00Z' });
    await send('products', 'c', { product_id: 11, product_name: 'Game', category: 'games', price: '100.00', rating: null, updated_at: '2024-01-01T00:00:00Z' });
    const o100 = { order_id: 100, customer_id: 1, order_date: '2024-02-20T00:00:00Z', status: 'placed', updated_at: '2024-03-02T00:00:00Z' };
    const o101 = { order_id: 101, customer_id: 1, order_date: '2024-03-10T00:00:00Z', status: 'placed', updated_at: '2024-03-10T00:00:00Z' };
    // Lines arrive before their order: they wait in staging.
    await send('order_items', 'c', { order_id: 100, product_id: 10, quantity: 3, unit_price: '19.99', discount: '0.15' });
    await send('order_items', 'c', { order_id: 100, product_id: 11, quantity: 1, unit_price: '0.05', discount: '0.50' });
    expect(await q('SELECT * FROM AN.fact_orders')).toEqual([]);
    await send('orders', 'c', o100);
    await send('orders', 'c', o101);
    await send('order_items', 'c', { order_id: 101, product_id: 11, quantity: 2, unit_price: '100.00', discount: '0.00' });
    // The segment change (2024-03-05) arrives after the order of 2024-03-10 it applies to.
    await send('customers', 'u', { ...c1, customer_segment: 'gold', updated_at: '2024-03-05T00:00:00Z' }, c1);

    const bronzeKey = md5('1-2024-03-01T10:00:00.000001Z');
    const goldKey = md5('1-2024-03-05T00:00:00.000000Z');
    expect(await q(`SELECT customer_key, email, customer_segment, to_char(expiration_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS exp, is_current FROM AN.dim_customers ORDER BY effective_date`)).toEqual([
      { customer_key: bronzeKey, email: 'ann@shop.io', customer_segment: 'bronze', exp: '2024-03-05 00:00:00.000000', is_current: false },
      { customer_key: goldKey, email: 'ann@shop.io', customer_segment: 'gold', exp: '9999-12-31 00:00:00.000000', is_current: true },
    ]);
    expect(await q('SELECT order_id, product_id, customer_key, date_key, line_total, order_total FROM AN.fact_orders ORDER BY order_id, product_id')).toEqual([
      { order_id: '100', product_id: '10', customer_key: bronzeKey, date_key: 20240220, line_total: '50.97', order_total: '51.00' },
      { order_id: '100', product_id: '11', customer_key: bronzeKey, date_key: 20240220, line_total: '0.03', order_total: '51.00' },
      { order_id: '101', product_id: '11', customer_key: goldKey, date_key: 20240310, line_total: '200.00', order_total: '200.00' },
    ]);
    const clvCols = 'customer_key, customer_segment, total_orders, total_items, total_revenue, avg_order_value, customer_lifetime_days, value_segment, frequency_segment';
    expect(await q(`SELECT ${clvCols} FROM AN.customer_lifetime_value`)).toEqual([
      { customer_key: goldKey, customer_segment: 'gold', total_orders: 2, total_items: '6', total_revenue: '251.00', avg_order_value: '125.50', customer_lifetime_days: 19, value_segment: 'medium', frequency_segment: 'repeat' },
    ]);

    await send('orders', 'u', { ...o101, status: 'cancelled', updated_at: '2024-03-11T00:00:00Z' }, o101);
    expect(await q(`SELECT ${clvCols} FROM AN.customer_lifetime_value`)).toEqual([
      { customer_key: goldKey, customer_segment: 'gold', total_orders: 1, total_items: '4', total_revenue: '51.00', avg_order_value: '51.00', customer_lifetime_days: 0, value_segment: 'low', frequency_segment: 'one_time' },
    ]);
    expect(await q('SELECT date_key, category, orders, units, revenue FROM AN.mart_sales ORDER BY 1, 2')).toEqual([
      { date_key: 20240220, category: 'books', orders: 1, units: '3', revenue: '50.97' },
      { date_key: 20240220, category: 'games', orders: 1, units: '1', revenue: '0.03' },
    ]);
    await send('orders', 'u', { ...o101, status: 'placed', updated_at: '2024-03-12T00:00:00Z' }, { ...o101, status: 'cancelled' });
    expect((await q('SELECT total_revenue FROM AN.customer_lifetime_value'))[0]).toEqual({ total_revenue: '251.00' });

    await send('orders', 'u', { ...o100, status: 'shipped', updated_at: '2024-03-03T12:30:00Z' }, o100);
    await send('orders', 'u', { ...o100, status: 'delivered', updated_at: '2024-03-04T06:00:00Z' }, o100);
    expect(await q(`SELECT order_id, status, hours_to_ship, hours_to_deliver, cancelled_at IS NOT NULL AS cancelled FROM AN.order_fulfillment ORDER BY order_id`)).toEqual([
      { order_id: '100', status: 'delivered', hours_to_ship: '36.50', hours_to_deliver: '54.00', cancelled: false },
      { order_id: '101', status: 'placed', hours_to_ship: null, hours_to_deliver: null, cancelled: true },
    ]);

    // A product's category change moves its revenue between mart cells.
    await send('products', 'u', { product_id: 10, product_name: 'Book', category: 'games', price: '19.99', rating: '4.50', updated_at: '2024-03-15T00:00:00Z' });
    expect(await q('SELECT date_key, category, orders, units, revenue FROM AN.mart_sales ORDER BY 1, 2')).toEqual([
      { date_key: 20240220, category: 'games', orders: 1, units: '4', revenue: '51.00' },
      { date_key: 20240310, category: 'games', orders: 1, units: '2', revenue: '200.00' },
    ]);
    expect(await q('SELECT product_id, price_tier, product_key FROM AN.dim_products ORDER BY 1')).toEqual([
      { product_id: '10', price_tier: 'budget', product_key: md5('10') },
      { product_id: '11', price_tier: 'premium', product_key: md5('11') },
    ]);
    // Deleting the order's lines and the order retracts everything it contributed.
    await send('order_items', 'd', { order_id: 101, product_id: 11, quantity: 2, unit_price: '100.00', discount: '0.00' });
    await send('orders', 'd', { ...o101, status: 'placed', updated_at: '2024-03-12T00:00:00Z' });
    expect((await q('SELECT total_orders, total_revenue FROM AN.customer_lifetime_value'))[0]).toEqual({ total_orders: 1, total_revenue: '51.00' });
    expect(await q('SELECT order_id FROM AN.order_fulfillment')).toEqual([{ order_id: '100' }]);

    const client = await pool.connect();
    try {
      for (const d of await diffDerivedTables(client, schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
  });

  it('applies a truncate as a delete of every row at that point of the stream, then what follows it', async () => {
    const t = avroType(envelopeSchema('shop', 'order_items'));
    const change = (ev: Omit<FixtureEvent, 'lsn' | 'commitTime'>) => {
      lsn += 10n;
      return validateEnvelope(t.fromBuffer(t.toBuffer(envelopeValue({ ...ev, lsn, commitTime: '2024-04-01T00:00:00.000000Z' }))));
    };
    const off = offsets.get('order_items') ?? 0;
    const line = { order_id: 100, product_id: 11, quantity: 5, unit_price: '0.05', discount: '0.00' };
    const messages = [
      { offset: String(off), change: change({ table: 'order_items', op: 't' }) },
      { offset: String(off + 1), change: change({ table: 'order_items', op: 'c', after: line }) },
    ];
    await applyBatch(pool, schemas, { group: 'g', topic: 'order_items', partition: 0, messages, deadLetters: [] }, { redisKeyPrefix: '' });
    expect(await q('SELECT order_id, product_id, quantity, line_total, order_total FROM AN.fact_orders')).toEqual([
      { order_id: '100', product_id: '11', quantity: 5, line_total: '0.25', order_total: '0.25' },
    ]);
    expect(await q('SELECT total_items, total_revenue FROM AN.customer_lifetime_value')).toEqual([{ total_items: '5', total_revenue: '0.25' }]);
    const client = await pool.connect();
    try {
      for (const d of await diffDerivedTables(client, schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
  });

  it('segments CLV at the SPEC thresholds, inclusive, and rounds the average half away from zero', async () => {
    // customer, orders (each one line of quantity 1), revenue per order
    const cases: Array<[number, number, string]> = [
      [1, 1, '1000.00'], [2, 1, '999.99'], [3, 1, '250.00'], [4, 1, '249.99'],
      [5, 2, '0.025'], [6, 4, '25.00'], [7, 5, '20.00'], [8, 3, '33.3333'],
    ];
    const values = cases.flatMap(([c, n, rev]) => Array.from({ length: n }, (_, i) =>
      `(${c}, ${c * 100 + i}, 'delivered', 1, ${rev}::numeric, timestamptz '2024-01-01' + ${i} * interval '36 hours')`)).join(', ');
    const fact = `(SELECT * FROM (VALUES ${values}) AS v(customer_id, order_id, status, quantity, line_total, order_date))`;
    const dims = `(SELECT NULL::bigint AS customer_id, NULL::text AS customer_key, NULL::text AS customer_segment, false AS is_current)`;
    const { rows } = await pool.query(`SELECT customer_id::int, total_orders, avg_order_value, customer_lifetime_days, value_segment, frequency_segment
      FROM (${clvSelectSql(fact, dims, DEFAULT_CLV_THRESHOLDS)}) x ORDER BY 1`);
    expect(rows.map((r) => [r.customer_id, r.value_segment, r.frequency_segment, r.avg_order_value, r.customer_lifetime_days])).toEqual([
      [1, 'high', 'one_time', '1000.00', 0],
      [2, 'medium', 'one_time', '999.99', 0],
      [3, 'medium', 'one_time', '250.00', 0],
      [4, 'low', 'one_time', '249.99', 0],
      [5, 'low', 'repeat', '0.03', 1],
      [6, 'low', 'repeat', '25.00', 4],
      [7, 'low', 'loyal', '20.00', 6],
      [8, 'low', 'repeat', '33.33', 3],
    ]);
  });
});
