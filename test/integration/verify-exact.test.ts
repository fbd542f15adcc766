import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { type TableName } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { applyBatch } from '../../consumers/warehouse/apply.ts';
import type { BatchMessage } from '../../src/sinks/postgres/batch-tx.ts';
import { fullRefresh } from '../../consumers/warehouse/full-refresh.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { runVerify, type VerifyReport } from '../../src/rebuild/verify.ts';
import { fixtureChange, ShopSim } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * verify's comparison is exact: a single corrupted value in any derived
 * table (a numeric off by 0.01, a NULL for a value and a value for a NULL,
 * a missing row, an extra row, a SCD2 version with a wrong valid_to) is
 * found and named by its key, by the hashed-bucket comparison
 * (src/rebuild/bucket-diff.ts) against the real Postgres. Each round
 * corrupts one value per table, runs verify, checks every table names
 * exactly its corrupted key, and restores the tables with a full refresh.
 */

type Corruption = { table: string; key: string; kind: 'changed' | 'missing' | 'extra' };

describe('verify names every single corrupted value (Postgres only)', () => {
  const id = uniqueId('vexact');
  const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  const an = `"${schemas.analytics}"`;
  let pool: pg.Pool;

  async function verify(): Promise<VerifyReport> {
    const c = await pool.connect();
    try {
      return await runVerify(c, schemas);
    } finally {
      c.release();
    }
  }

  /** Each corruption, and no other difference in any table. */
  function expectNamed(r: VerifyReport, corruptions: Corruption[]): void {
    expect(r.ok).toBe(false);
    for (const d of r.recompute) {
      const mine = corruptions.filter((c) => c.table === d.table);
      const missing = mine.filter((c) => c.kind !== 'extra').map((c) => c.key).sort();
      const unexpected = mine.filter((c) => c.kind !== 'missing').map((c) => c.key).sort();
      expect({ table: d.table, missing: d.missing, unexpected: d.unexpected, keys: { missing: [...d.keys.missing].sort(), unexpected: [...d.keys.unexpected].sort() } })
        .toEqual({ table: d.table, missing: missing.length, unexpected: unexpected.length, keys: { missing, unexpected } });
    }
  }

  async function one(sql: string): Promise<string> {
    const { rows } = await pool.query(sql);
    expect(rows, sql).toHaveLength(1);
    return String(rows[0].k);
  }

  async function restore(): Promise<void> {
    await fullRefresh(pool, schemas, { redisKeyPrefix: `${id}:` });
    const r = await verify();
    expect(r.recompute.filter((d) => d.missing + d.unexpected > 0)).toEqual([]);
    expect(r.ok).toBe(true);
  }

  beforeAll(async () => {
    pool = createWarehousePool(stackEnv.warehouseUrl, 2);
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
    const sim = new ShopSim(4242);
    sim.randomWorkload(1000);
    const streams = new Map<TableName, BatchMessage[]>();
    for (const ev of sim.events) {
      const st = streams.get(ev.table) ?? [];
      st.push({ offset: String(st.length), change: fixtureChange(ev) });
      streams.set(ev.table, st);
    }
    for (const [table, msgs] of streams) {
      for (let i = 0; i < msgs.length; i += 500) {
        await applyBatch(pool, schemas, { group: 'g', topic: table, partition: 0, messages: msgs.slice(i, i + 500), deadLetters: [] }, { redisKeyPrefix: `${id}:`, deferDerived: true });
      }
    }
    await fullRefresh(pool, schemas, { redisKeyPrefix: `${id}:` });
  });

  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    await pool.end();
  });

  it('is clean on the full refresh, with data in every table, and equal values in another numeric scale are no difference', async () => {
    const n = (await pool.query(`SELECT (SELECT count(*) FROM ${an}.fact_orders)::int AS f, (SELECT count(*) FROM ${an}.dim_customers WHERE NOT is_current)::int AS closed,
      (SELECT count(*) FROM ${an}.customer_lifetime_value)::int AS clv, (SELECT count(*) FROM ${an}.mart_sales)::int AS m,
      (SELECT count(*) FROM ${an}.order_fulfillment WHERE shipped_at IS NOT NULL AND cancelled_at IS NULL)::int AS shipped`)).rows[0];
    expect(n.f).toBeGreaterThan(200);
    expect(n.closed).toBeGreaterThan(5);
    expect(n.clv).toBeGreaterThan(10);
    expect(n.m).toBeGreaterThan(10);
    expect(n.shipped).toBeGreaterThan(3);
    // 12.5 stored as 12.5000: the same number, as EXCEPT ALL and every reader see it.
    await pool.query(`UPDATE ${an}.fact_orders SET unit_price = unit_price::numeric(20, 6), line_total = line_total::numeric(20, 4)`);
    const r = await verify();
    expect(r.ok).toBe(true);
    expect(r.recompute.map((d) => d.differingBuckets)).toEqual([0, 0, 0, 0, 0, 0, 0]);
  });

  it('names a numeric changed by 0.01 in each table', async () => {
    const c: Corruption[] = [
      { table: 'dim_products', kind: 'changed', key: await one(`UPDATE ${an}.dim_products SET price = price + 0.01 WHERE product_id = (SELECT min(product_id) FROM ${an}.dim_products WHERE price IS NOT NULL) RETURNING product_id AS k`) },
      { table: 'fact_orders', kind: 'changed', key: await one(`UPDATE ${an}.fact_orders SET line_total = line_total + 0.01 WHERE order_item_key = (SELECT max(order_item_key) FROM ${an}.fact_orders) RETURNING order_item_key AS k`) },
      { table: 'customer_lifetime_value', kind: 'changed', key: await one(`UPDATE ${an}.customer_lifetime_value SET total_revenue = total_revenue - 0.01 WHERE customer_id = (SELECT max(customer_id) FROM ${an}.customer_lifetime_value) RETURNING customer_id AS k`) },
      { table: 'mart_sales', kind: 'changed', key: await one(`UPDATE ${an}.mart_sales SET revenue = revenue + 0.01 WHERE (date_key, category) = (SELECT date_key, category FROM ${an}.mart_sales WHERE category IS NOT NULL ORDER BY 1, 2 LIMIT 1) RETURNING date_key || '/' || category AS k`) },
      { table: 'order_fulfillment', kind: 'changed', key: await one(`UPDATE ${an}.order_fulfillment SET hours_to_ship = hours_to_ship + 0.01 WHERE order_id = (SELECT min(order_id) FROM ${an}.order_fulfillment WHERE hours_to_ship IS NOT NULL) RETURNING order_id AS k`) },
      { table: 'dim_date', kind: 'changed', key: await one(`UPDATE ${an}.dim_date SET week_of_year = week_of_year + 1 WHERE date_key = 20240229 RETURNING date_key AS k`) },
      { table: 'dim_customers', kind: 'changed', key: await one(`UPDATE ${an}.dim_customers SET effective_date = effective_date + interval '1 microsecond' WHERE customer_key = (SELECT min(customer_key) FROM ${an}.dim_customers) RETURNING customer_key AS k`) },
    ];
    expectNamed(await verify(), c);
    // The full refresh keeps dim_date's existing rows (it only adds days).
    await pool.query(`UPDATE ${an}.dim_date SET week_of_year = week_of_year - 1 WHERE date_key = 20240229`);
    await restore();
  });

  it('names a NULL where a value belongs and a value where a NULL belongs', async () => {
    const c: Corruption[] = [
      { table: 'dim_products', kind: 'changed', key: await one(`UPDATE ${an}.dim_products SET category = NULL WHERE product_id = (SELECT max(product_id) FROM ${an}.dim_products WHERE category IS NOT NULL) RETURNING product_id AS k`) },
      { table: 'fact_orders', kind: 'changed', key: await one(`UPDATE ${an}.fact_orders SET customer_key = NULL WHERE order_item_key = (SELECT min(order_item_key) FROM ${an}.fact_orders WHERE customer_key IS NOT NULL) RETURNING order_item_key AS k`) },
      { table: 'customer_lifetime_value', kind: 'changed', key: await one(`UPDATE ${an}.customer_lifetime_value SET customer_segment = NULL WHERE customer_id = (SELECT min(customer_id) FROM ${an}.customer_lifetime_value WHERE customer_segment IS NOT NULL) RETURNING customer_id AS k`) },
      { table: 'order_fulfillment', kind: 'changed', key: await one(`UPDATE ${an}.order_fulfillment SET cancelled_at = placed_at WHERE order_id = (SELECT max(order_id) FROM ${an}.order_fulfillment WHERE cancelled_at IS NULL AND placed_at IS NOT NULL) RETURNING order_id AS k`) },
      { table: 'dim_customers', kind: 'changed', key: await one(`UPDATE ${an}.dim_customers SET email = NULL WHERE customer_key = (SELECT max(customer_key) FROM ${an}.dim_customers WHERE email IS NOT NULL) RETURNING customer_key AS k`) },
    ];
    expectNamed(await verify(), c);
    await restore();
  });

  it('names a missing row and an extra row in each table', async () => {
    const c: Corruption[] = [
      { table: 'dim_products', kind: 'missing', key: await one(`DELETE FROM ${an}.dim_products WHERE product_id = (SELECT max(product_id) FROM ${an}.dim_products) RETURNING product_id AS k`) },
      { table: 'dim_products', kind: 'extra', key: await one(`INSERT INTO ${an}.dim_products (product_key, product_id, product_name) VALUES (md5('987654'), 987654, 'ghost') RETURNING product_id AS k`) },
      { table: 'fact_orders', kind: 'missing', key: await one(`DELETE FROM ${an}.fact_orders WHERE order_item_key = (SELECT min(order_item_key) FROM ${an}.fact_orders) RETURNING order_item_key AS k`) },
      { table: 'fact_orders', kind: 'extra', key: await one(`INSERT INTO ${an}.fact_orders SELECT md5('x'), order_id, product_id + 100000, customer_id, customer_key, product_key, date_key, order_date, status, quantity, unit_price, discount, line_total, order_total
        FROM ${an}.fact_orders WHERE order_item_key = (SELECT max(order_item_key) FROM ${an}.fact_orders) RETURNING order_item_key AS k`) },
      { table: 'customer_lifetime_value', kind: 'missing', key: await one(`DELETE FROM ${an}.customer_lifetime_value WHERE customer_id = (SELECT min(customer_id) FROM ${an}.customer_lifetime_value) RETURNING customer_id AS k`) },
      { table: 'mart_sales', kind: 'extra', key: await one(`INSERT INTO ${an}.mart_sales VALUES (20240101, 'no such category', 1, 1, 9.99) RETURNING date_key || '/' || category AS k`) },
      { table: 'order_fulfillment', kind: 'missing', key: await one(`DELETE FROM ${an}.order_fulfillment WHERE order_id = (SELECT max(order_id) FROM ${an}.order_fulfillment) RETURNING order_id AS k`) },
      { table: 'dim_date', kind: 'missing', key: await one(`DELETE FROM ${an}.dim_date WHERE date_key = 20301231 RETURNING date_key AS k`) },
      { table: 'dim_customers', kind: 'extra', key: await one(`INSERT INTO ${an}.dim_customers SELECT md5('extra version'), customer_id, email, full_name, customer_segment, effective_date + interval '1 day', expiration_date, is_current
        FROM ${an}.dim_customers WHERE customer_key = (SELECT min(customer_key) FROM ${an}.dim_customers) RETURNING customer_key AS k`) },
    ];
    expectNamed(await verify(), c);
    await restore();
  });

  it('names a SCD2 version with a wrong valid_to, and a wrongly current one', async () => {
    const closed = await one(`UPDATE ${an}.dim_customers SET expiration_date = expiration_date + interval '1 second'
      WHERE customer_key = (SELECT min(customer_key) FROM ${an}.dim_customers WHERE NOT is_current) RETURNING customer_key AS k`);
    const current = await one(`UPDATE ${an}.dim_customers SET is_current = false
      WHERE customer_key = (SELECT max(customer_key) FROM ${an}.dim_customers WHERE is_current) RETURNING customer_key AS k`);
    const r = await verify();
    expectNamed(r, [{ table: 'dim_customers', kind: 'changed', key: closed }, { table: 'dim_customers', kind: 'changed', key: current }]);
    expect(r.checks.find((x) => x.name.startsWith('dim_customers current version iff'))).toMatchObject({ failures: 1, samples: [{ key: current }] });
    await restore();
  });
});
