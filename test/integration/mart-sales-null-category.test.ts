import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateEnvelope } from '../../src/consumer/envelope.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { runDataChecks } from '../../src/rebuild/checks.ts';
import { applyBatch } from '../../consumers/warehouse/apply.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { fullRefresh } from '../../consumers/warehouse/full-refresh.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { avroType, envelopeSchema, envelopeValue, type FixtureEvent, type FixtureRow } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * docs/contract.md#mart_sales: lines of products without a category count in
 * one group whose category is NULL, as GROUP BY makes it, in the per-key
 * path (order deltas and product moves), the full refresh and the batch
 * recomputation alike.
 */
describe('mart_sales NULL-category group', () => {
  const id = uniqueId('mart_null');
  const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  let pool: pg.Pool;
  let lsn = 1000n;
  const offsets = new Map<string, number>();

  async function send(table: FixtureEvent['table'], op: 'c' | 'u' | 'd', row: FixtureRow, before: FixtureRow | null = null): Promise<void> {
    lsn += 10n;
    const ev: FixtureEvent = { table, op, after: op === 'd' ? null : row, before: op === 'd' ? row : before, lsn, commitTime: '2024-05-01T00:00:00.000000Z' };
    const t = avroType(envelopeSchema('shop', table));
    const change = validateEnvelope(t.fromBuffer(t.toBuffer(envelopeValue(ev))));
    const off = offsets.get(table) ?? 0;
    offsets.set(table, off + 1);
    await applyBatch(pool, schemas, { group: 'g', topic: table, partition: 0, messages: [{ offset: String(off), change }], deadLetters: [] }, { redisKeyPrefix: '' });
  }
  const mart = async () => (await pool.query(`SELECT date_key, category, orders, units, revenue FROM "${schemas.analytics}".mart_sales ORDER BY date_key, category NULLS FIRST`)).rows;
  async function expectBatchEqual(): Promise<void> {
    const client = await pool.connect();
    try {
      for (const d of await diffDerivedTables(client, schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
      for (const c of await runDataChecks(client, schemas)) expect(c, c.name).toMatchObject({ failures: 0 });
    } finally {
      client.release();
    }
  }

  beforeAll(async () => {
    pool = createWarehousePool(stackEnv.warehouseUrl);
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    await pool.end();
  });

  it('counts uncategorised lines in a NULL cell per day, follows category changes in and out of it, and equals the batch recomputation and the full refresh', async () => {
    const c1 = { customer_id: 1, email: 'a@x.io', first_name: 'A', last_name: 'B', customer_segment: 'gold', created_at: '2024-04-01T00:00:00Z', updated_at: '2024-04-01T00:00:00Z' };
    await send('customers', 'c', c1);
    const p10 = { product_id: 10, product_name: 'Loose screw', category: null, price: '2.50', rating: null, updated_at: '2024-04-01T00:00:00Z' };
    const p11 = { product_id: 11, product_name: 'Book', category: 'books', price: '10.00', rating: null, updated_at: '2024-04-01T00:00:00Z' };
    await send('products', 'c', p10);
    await send('products', 'c', p11);
    const o1 = { order_id: 1, customer_id: 1, order_date: '2024-04-02T10:00:00Z', status: 'placed', updated_at: '2024-04-02T10:00:00Z' };
    const o2 = { order_id: 2, customer_id: 1, order_date: '2024-04-02T11:00:00Z', status: 'placed', updated_at: '2024-04-02T11:00:00Z' };
    await send('orders', 'c', o1);
    await send('orders', 'c', o2);
    await send('order_items', 'c', { order_id: 1, product_id: 10, quantity: 3, unit_price: '2.50', discount: '0.00' });
    await send('order_items', 'c', { order_id: 1, product_id: 11, quantity: 1, unit_price: '10.00', discount: '0.00' });
    await send('order_items', 'c', { order_id: 2, product_id: 10, quantity: 1, unit_price: '2.55', discount: '0.10' });
    // The per-order delta path: both orders add to the one NULL cell of the day (ON CONFLICT on the NULL key).
    expect(await mart()).toEqual([
      { date_key: 20240402, category: null, orders: 2, units: '4', revenue: '9.80' },
      { date_key: 20240402, category: 'books', orders: 1, units: '1', revenue: '10.00' },
    ]);
    await expectBatchEqual();

    // Cancelling an order retracts its share of the NULL cell.
    await send('orders', 'u', { ...o2, status: 'cancelled', updated_at: '2024-04-03T00:00:00Z' }, o2);
    expect((await mart())[0]).toEqual({ date_key: 20240402, category: null, orders: 1, units: '3', revenue: '7.50' });

    // A product moves out of the NULL group into a category, and another into it.
    await send('products', 'u', { ...p10, category: 'hardware', updated_at: '2024-04-04T00:00:00Z' }, p10);
    await send('products', 'u', { ...p11, category: null, updated_at: '2024-04-04T00:00:00Z' }, p11);
    expect(await mart()).toEqual([
      { date_key: 20240402, category: null, orders: 1, units: '1', revenue: '10.00' },
      { date_key: 20240402, category: 'hardware', orders: 1, units: '3', revenue: '7.50' },
    ]);
    await expectBatchEqual();

    // A line whose product arrives later (no dim_products row yet), without a category.
    const o3 = { order_id: 3, customer_id: 1, order_date: '2024-04-05T00:00:00Z', status: 'placed', updated_at: '2024-04-05T00:00:00Z' };
    await send('orders', 'c', o3);
    await send('order_items', 'c', { order_id: 3, product_id: 12, quantity: 2, unit_price: '1.00', discount: '0.00' });
    expect((await mart()).filter((r) => r.date_key === 20240405)).toEqual([]);
    await send('products', 'c', { product_id: 12, product_name: 'Widget', category: null, price: '1.00', rating: null, updated_at: '2024-04-05T00:00:00Z' });
    expect((await mart()).filter((r) => r.date_key === 20240405)).toEqual([
      { date_key: 20240405, category: null, orders: 1, units: '2', revenue: '2.00' },
    ]);
    await expectBatchEqual();

    // The NULL cell's revenue is all the qualifying fact revenue of its products.
    const { rows: [total] } = await pool.query(
      `SELECT (SELECT sum(revenue) FROM "${schemas.analytics}".mart_sales) AS mart,
              (SELECT sum(line_total) FROM "${schemas.analytics}".fact_orders WHERE status NOT IN ('cancelled', 'returned')) AS fact`);
    expect(total.mart).toBe(total.fact);

    const before = await mart();
    await fullRefresh(pool, schemas, { redisKeyPrefix: '' });
    expect(await mart()).toEqual(before);
    await expectBatchEqual();
    // The cell key still holds one NULL cell per day after the refresh rebuilt its constraint.
    await expect(pool.query(`INSERT INTO "${schemas.analytics}".mart_sales VALUES (20240405, NULL, 1, 1, 1)`)).rejects.toThrow(/duplicate key/);
  });
});
