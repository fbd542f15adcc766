import type pg from 'pg';
import {
  clvPayloadSql, clvSelectSql, DEFAULT_CLV_THRESHOLDS, dimCustomersSelectSql, dimProductsSelectSql, factOrdersSelectSql, fulfillmentSelectSql, martSalesSelectSql,
  type ClvThresholds,
} from './derived-sql.ts';
import { materializeChangeLog } from './change-log.ts';
import { namespaceLockSql } from '../../src/sinks/postgres/batch-tx.ts';
import { withIndexesRebuiltAfter } from '../../src/sinks/postgres/bulk-indexes.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';

/**
 * Rebuilds every derived table of a namespace from its staging and history
 * in one transaction, set-based: the second half of a replay that applied
 * staging with `deferDerived` (and the "plain batch SQL full refresh" the
 * rebuild benchmark compares with). Readers see the old rows until COMMIT.
 * Every CLV row gets a new version and an outbox entry, so Redis follows;
 * hashes of customers that no longer have a row are left to
 * `npm run redis:rebuild`.
 */
export interface FullRefreshResult {
  factOrders: number;
  customers: number;
  ms: number;
}

export async function fullRefresh(
  pool: pg.Pool,
  schemas: WarehouseSchemas,
  /**
   * `outbox: false` leaves the Redis outbox alone: a replay's rebuilt rows
   * reach Redis through the swap, which queues only the figures that changed.
   */
  opts: { redisKeyPrefix: string; thresholds?: ClvThresholds; outbox?: boolean },
): Promise<FullRefreshResult> {
  const { stg, an, meta } = quoted(schemas);
  const started = Date.now();
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const lock = namespaceLockSql(schemas);
    await client.query(lock.sql, lock.params);
    // A replay's staging and history still in its change log (deferDerived) go into place first.
    await materializeChangeLog(client, schemas);
    await client.query(`TRUNCATE ${an}.dim_products, ${an}.dim_customers, ${an}.fact_orders, ${an}.customer_lifetime_value, ${an}.mart_sales, ${an}.order_fulfillment`);
    // dim_customers keeps its indexes: the fact_orders load probes it per order.
    const bulk = ['fact_orders', 'customer_lifetime_value', 'mart_sales', 'order_fulfillment'].map((t) => `${an}.${t}`);
    const { fact, clv } = await withIndexesRebuiltAfter(client, bulk, async () => {
      await client.query(`INSERT INTO ${an}.dim_products (product_key, product_id, product_name, category, price, rating, price_tier) ${dimProductsSelectSql(stg)}`);
      await client.query(`INSERT INTO ${an}.dim_customers SELECT * FROM (${dimCustomersSelectSql(stg)}) d`);
      await client.query(
        `INSERT INTO ${an}.dim_date
         SELECT * FROM ${an}.dim_date_rows(
           LEAST('2020-01-01'::date, (SELECT min((order_date AT TIME ZONE 'UTC')::date) FROM ${stg}.order_status_changes)),
           GREATEST('2030-12-31'::date, (SELECT max((order_date AT TIME ZONE 'UTC')::date) FROM ${stg}.order_status_changes)))
         ON CONFLICT DO NOTHING`);
      const fact = await client.query(`INSERT INTO ${an}.fact_orders ${factOrdersSelectSql(stg, `${an}.dim_customers`)}`);
      await client.query(`INSERT INTO ${an}.mart_sales (date_key, category, orders, units, revenue) ${martSalesSelectSql(`${an}.fact_orders`, `${an}.dim_products`)}`);
      const clv = await client.query(
        `INSERT INTO ${an}.customer_lifetime_value
         SELECT c.*, nextval('${meta}.clv_version_seq') FROM (${clvSelectSql(`${an}.fact_orders`, `${an}.dim_customers`, opts.thresholds ?? DEFAULT_CLV_THRESHOLDS)}) c`);
      await client.query(`INSERT INTO ${an}.order_fulfillment ${fulfillmentSelectSql(stg)}`);
      if (opts.outbox !== false) await client.query(
        `INSERT INTO ${meta}.redis_outbox (key_prefix, customer_id, version, payload)
         SELECT $1, p.customer_id::bigint, p.version::bigint, p.payload FROM (${clvPayloadSql(an)}) p`, [opts.redisKeyPrefix]);
      return { fact, clv };
    });
    await client.query('COMMIT');
    return { factOrders: fact.rowCount ?? 0, customers: clv.rowCount ?? 0, ms: Date.now() - started };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
