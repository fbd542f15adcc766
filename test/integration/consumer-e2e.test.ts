import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, isoSql, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stagingRows } from '../../consumers/warehouse/staging-apply.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { stackEnv } from '../helpers/stack-env.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/**
 * End to end: changes in the source database → our capture (pgoutput →
 * Kafka, Debezium Avro) → the warehouse consumer → staging equal to the
 * source, microseconds included, and derived tables equal to the batch
 * recomputation.
 */
describe('source → capture → Kafka → warehouse consumer', () => {
  let h: Harness | undefined;
  let wh: pg.Pool | undefined;
  let schemas: WarehouseSchemas | undefined;
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  const stops: Array<() => Promise<void>> = [];

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    if (wh && schemas) {
      await wh.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
      await wh.end();
    }
    await h?.cleanup();
    redis.disconnect();
  });

  it('keeps staging equal to the source and the derived tables equal to the batch recomputation', async () => {
    h = await createHarness(uniqueId('e2e'));
    const s = h.id;
    const src = h.pool;
    // Rows present before the capture starts arrive as snapshot reads (op r).
    await src.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES
      (1, ' Ann@X.io', 'Ann', 'Lee', 'bronze'), (2, 'bo@x.io', 'Bo', 'Ng', 'silver')`);
    await src.query(`INSERT INTO ${s}.products (product_id, product_name, category, price, rating) VALUES
      (10, 'Book', 'books', 19.99, 4.5), (11, 'Game', 'games', 100.00, NULL)`);
    const topics = TABLE_NAMES.map((t) => h!.topic(t));
    const kafka = new kafkajs.Kafka({ clientId: 'e2e', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    stops.push(() => admin.disconnect());
    schemas = { staging: `${s}_stg`, analytics: `${s}_an`, meta: `${s}_wmeta` };
    wh = createWarehousePool(stackEnv.warehouseUrl);
    await migrate(wh, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
    const consumer = new WarehouseConsumer({
      kafka, registry: createRegistry(stackEnv.registryUrl), pool: wh, redis, schemas, group: `${s}_wh`,
      topics, redisKeyPrefix: `${s}:`, log: createLogger('e2e', 'warn'),
    });
    const ac = new AbortController();
    // Started before the capture has created any topic: it must wait for them.
    const started = consumer.start(ac.signal);
    stops.push(async () => {
      ac.abort();
      await consumer.stop();
      const keys = await redis.keys(`${s}:*`);
      if (keys.length) await redis.del(...keys);
    });
    const capture = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'initial' }));
    stops.push(() => capture.stop());

    // Streamed changes, including a multi-statement transaction.
    await src.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (3, 'cy@x.io', 'Cy', 'Roe', 'gold')`);
    await src.query(`BEGIN;
      INSERT INTO ${s}.orders (order_id, customer_id, order_date, status) VALUES (100, 1, '2024-05-01 10:00:00.123456+00', 'placed');
      INSERT INTO ${s}.order_items VALUES (100, 10, 3, 19.99, 0.15), (100, 11, 1, 0.05, 0.50);
      COMMIT`);
    await src.query(`UPDATE ${s}.customers SET customer_segment = 'platinum' WHERE customer_id = 1`);
    await src.query(`UPDATE ${s}.orders SET status = 'shipped' WHERE order_id = 100`);
    await src.query(`INSERT INTO ${s}.orders (order_id, customer_id, order_date, status) VALUES (101, 2, now(), 'placed')`);
    await src.query(`INSERT INTO ${s}.order_items VALUES (101, 11, 2, 100.00, 0)`);
    await src.query(`UPDATE ${s}.orders SET status = 'cancelled' WHERE order_id = 101`);
    await src.query(`UPDATE ${s}.customers SET email = 'ANN@new.io ', last_name = 'Lee-Smith' WHERE customer_id = 1`);
    await src.query(`DELETE FROM ${s}.customers WHERE customer_id = 3`);
    await src.query(`UPDATE ${s}.products SET category = 'games', price = 21.50 WHERE product_id = 10`);

    await waitFor('capture topics', async () => {
      const existing = new Set(await admin.listTopics());
      return topics.every((t) => existing.has(t));
    }, 60_000);
    await started;

    // The source is quiet now; wait until the capture has published everything and the consumer applied it.
    const sourceRows = async (table: (typeof TABLE_NAMES)[number]) => {
      const cols = Object.entries(TABLES[table].columns).map(([c, k]) => (k === 'timestamptz' ? `${isoSql(c)} AS ${c}` : `${c}::text AS ${c}`));
      const { rows } = await src.query(`SELECT ${cols.join(', ')} FROM ${s}.${table}`);
      return rows.map((r) => JSON.stringify(Object.keys(TABLES[table].columns).map((c) => r[c] ?? null))).sort();
    };
    const stagingText = async (table: (typeof TABLE_NAMES)[number]) => {
      const client = await wh!.connect();
      try {
        return (await stagingRows(client, schemas!, table)).map((r) => JSON.stringify(Object.keys(TABLES[table].columns).map((c) => r[c] ?? null))).sort();
      } finally {
        client.release();
      }
    };
    await waitFor('staging equals source', async () => {
      for (const t of TABLE_NAMES) {
        if (JSON.stringify(await stagingText(t)) !== JSON.stringify(await sourceRows(t))) return null;
      }
      return true;
    }, 60_000).catch(() => undefined);
    await waitCaughtUp(admin, wh, schemas, `${s}_wh`, topics, { timeoutMs: 30_000 });
    for (const t of TABLE_NAMES) expect(await stagingText(t), `stg_${t}`).toEqual(await sourceRows(t));

    // Microseconds survived the whole trip.
    const { rows } = await wh.query(`SELECT to_char(order_date AT TIME ZONE 'UTC', 'SS.US') AS t FROM "${schemas.staging}".stg_orders WHERE order_id = 100`);
    expect(rows[0].t).toBe('00.123456');
    const client = await wh.connect();
    try {
      for (const d of await diffDerivedTables(client, schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
    const dims = await wh.query(`SELECT customer_id::int, customer_segment, is_current FROM "${schemas.analytics}".dim_customers ORDER BY customer_id, effective_date`);
    expect(dims.rows).toEqual([
      { customer_id: 1, customer_segment: 'bronze', is_current: false },
      { customer_id: 1, customer_segment: 'platinum', is_current: true },
      { customer_id: 2, customer_segment: 'silver', is_current: true },
      { customer_id: 3, customer_segment: 'gold', is_current: false },
    ]);
    const clv = await wh.query(`SELECT customer_id::int, total_revenue FROM "${schemas.analytics}".customer_lifetime_value ORDER BY 1`);
    expect(clv.rows).toEqual([{ customer_id: 1, total_revenue: '51.00' }]);
    await consumer.redisSink.flush();
    expect(await diffRedisClv(wh, redis, schemas, `${s}:`)).toEqual({ missing: [], stale: [], extra: [] });
  });
});
