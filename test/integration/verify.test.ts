import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import type { VerifyReport } from '../../src/rebuild/verify.ts';
import { runVerify } from '../../src/rebuild/verify.ts';
import { registerTable, ShopSim } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * `npm run verify` on a warehouse the real consumer built from Debezium Avro
 * in Kafka: clean exit 0 when caught up; exit 1 naming the table and the key
 * for each kind of deliberate corruption.
 */
const log = createLogger('test-verify', process.env.TEST_LOG_LEVEL ?? 'warn');
const CLI = fileURLToPath(new URL('../../src/cli/verify.ts', import.meta.url));
const id = uniqueId('verify');
const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
const topics = TABLE_NAMES.map((t) => `${id}.public.${t}`);
let kafka: Kafka;
let admin: Admin;
let producer: Producer;
let pool: pg.Pool;
let redis: Redis;
let sourcePool: pg.Pool;
const sim = new ShopSim(9001);

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta, WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl };
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function verifyNow(): Promise<VerifyReport> {
  const client = await pool.connect();
  try {
    return await runVerify(client, schemas);
  } finally {
    client.release();
  }
}

beforeAll(async () => {
  kafka = new kafkajs.Kafka({ clientId: 'test-verify', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await Promise.all([admin.connect(), producer.connect()]);
  pool = createWarehousePool(stackEnv.warehouseUrl, 4);
  redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  sourcePool = new pg.Pool({ connectionString: stackEnv.sourceUrl, max: 2 });
  await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 2 })), waitForLeaders: true });
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });

  const registry = createRegistry(stackEnv.registryUrl);
  sim.randomWorkload(250);
  const byTopic = new Map<string, Array<{ key: Buffer; value: Buffer }>>();
  for (const t of TABLE_NAMES) byTopic.set(`${id}.public.${t}`, []);
  const encoders = new Map(await Promise.all(TABLE_NAMES.map(async (t) => [t, await registerTable(registry, id, t)] as const)));
  for (const ev of sim.events) {
    const enc = encoders.get(ev.table)!;
    byTopic.get(enc.topic)!.push({ key: enc.encodeKey((ev.after ?? ev.before)!), value: enc.encodeValue(ev) });
  }
  await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
  const consumer = new WarehouseConsumer({ kafka, registry, pool, redis, schemas, group: id, topics, redisKeyPrefix: `${id}:`, log });
  const ac = new AbortController();
  await consumer.start(ac.signal);
  try {
    await waitCaughtUp(admin, pool, schemas, id, topics, { timeoutMs: 90_000 });
  } finally {
    ac.abort();
    await consumer.stop();
  }
});

afterAll(async () => {
  await admin.deleteTopics({ topics: [...topics, ...topics.map((t) => `${t}.dlq`)] }).catch(() => {});
  await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
  const keys = await redis.keys(`${id}:*`);
  if (keys.length) await redis.del(...keys);
  await Promise.all([admin.disconnect(), producer.disconnect()]);
  await sourcePool.query(`DROP SCHEMA IF EXISTS "${id}" CASCADE`);
  await Promise.all([pool.end(), sourcePool.end()]);
  redis.disconnect();
});

describe('verify', () => {
  it('is clean on a caught-up warehouse: exit 0, every table and check ok', async () => {
    const an = `"${schemas.analytics}"`;
    const counts = (await pool.query(`SELECT (SELECT count(*) FROM ${an}.fact_orders)::int AS f, (SELECT count(*) FROM ${an}.customer_lifetime_value)::int AS c,
      (SELECT count(*) FROM ${an}.dim_customers WHERE NOT is_current)::int AS closed`)).rows[0];
    // A workload worth verifying: lines, CLV rows and closed SCD2 versions.
    expect(counts.f).toBeGreaterThan(50);
    expect(counts.c).toBeGreaterThan(5);
    expect(counts.closed).toBeGreaterThan(3);
    const { code, stdout } = await runCli([]);
    expect(stdout).toMatch(/: OK \(/);
    expect(stdout).not.toMatch(/FAIL/);
    expect(stdout.match(/^ {2}ok {4}/gm)?.length).toBe(7 + 25);
    expect(code).toBe(0);
    const json = await runCli(['--json']);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as VerifyReport;
    expect(report.ok).toBe(true);
    expect(report.recompute.map((d) => d.table)).toEqual(['dim_products', 'dim_customers', 'dim_date', 'fact_orders', 'customer_lifetime_value', 'mart_sales', 'order_fulfillment']);
  });

  it('fails loudly on a changed fact_orders line_total, naming the table and the line key', async () => {
    const an = `"${schemas.analytics}"`;
    const { rows } = await pool.query(`UPDATE ${an}.fact_orders SET line_total = line_total + 0.01
      WHERE order_item_key = (SELECT min(order_item_key) FROM ${an}.fact_orders) RETURNING order_item_key`);
    const key = rows[0].order_item_key as string;
    const { code, stdout } = await runCli([]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/FAILED/);
    expect(stdout).toContain(`FAIL  fact_orders: 1 expected row(s) missing or different, 1 row(s) unexpected or different`);
    expect(stdout).toContain(`differing values at key ${key}`);
    const json = JSON.parse((await runCli(['--json'])).stdout) as VerifyReport;
    expect(json.ok).toBe(false);
    expect(json.recompute.find((d) => d.table === 'fact_orders')).toMatchObject({ missing: 1, unexpected: 1, keys: { missing: [key], unexpected: [key] } });
    await pool.query(`UPDATE ${an}.fact_orders SET line_total = line_total - 0.01 WHERE order_item_key = $1`, [key]);
    expect((await verifyNow()).ok).toBe(true);
  });

  it('names the customer when a dim_customers version is deleted: recompute diff, SCD2 gap, dangling fact keys', async () => {
    const an = `"${schemas.analytics}"`;
    // The first of several versions of a customer who has order lines pointing at it.
    const { rows } = await pool.query(`
      SELECT d.customer_key, d.customer_id::text FROM ${an}.dim_customers d
      WHERE NOT d.is_current AND EXISTS (SELECT 1 FROM ${an}.dim_customers n WHERE n.customer_id = d.customer_id AND n.effective_date > d.effective_date)
        AND EXISTS (SELECT 1 FROM ${an}.fact_orders f WHERE f.customer_key = d.customer_key)
      ORDER BY d.customer_id, d.effective_date LIMIT 1`);
    expect(rows).toHaveLength(1);
    const { customer_key: key, customer_id: customer } = rows[0];
    const saved = await pool.query(`DELETE FROM ${an}.dim_customers WHERE customer_key = $1 RETURNING *`, [key]);
    const r = await verifyNow();
    expect(r.ok).toBe(false);
    expect(r.recompute.find((d) => d.table === 'dim_customers')).toMatchObject({ missing: 1, unexpected: 0, keys: { missing: [key] } });
    const rel = r.checks.find((c) => c.name === 'fact_orders.customer_key -> dim_customers')!;
    expect(rel.failures).toBeGreaterThan(0);
    expect(rel.samples.every((s) => s.customer_id === customer)).toBe(true);
    const { code, stdout } = await runCli([]);
    expect(code).toBe(1);
    expect(stdout).toContain(`missing row(s) at key ${key}`);
    expect(stdout).toMatch(new RegExp(`FAIL  fact_orders.customer_key -> dim_customers: \\d+ row\\(s\\) in fact_orders\\n\\s+key=\\w+ customer_id=${customer} customer_key=${key}`));
    await pool.query(`INSERT INTO ${an}.dim_customers SELECT * FROM jsonb_populate_record(NULL::${an}.dim_customers, $1::jsonb)`, [JSON.stringify(saved.rows[0])]);
    expect((await verifyNow()).ok).toBe(true);

    // Removing a middle version leaves a gap the SCD2 check names; removing the current one leaves a live customer without one.
    const cur = await pool.query(`DELETE FROM ${an}.dim_customers WHERE customer_id = $1 AND is_current RETURNING *`, [customer]);
    const r2 = await verifyNow();
    expect(r2.checks.find((c) => c.name.startsWith('exactly one current version'))).toMatchObject({ failures: 1, samples: [{ key: customer, live: true, current_versions: 0 }] });
    await pool.query(`INSERT INTO ${an}.dim_customers SELECT * FROM jsonb_populate_record(NULL::${an}.dim_customers, $1::jsonb)`, [JSON.stringify(cur.rows[0])]);
    const mid = await pool.query(`UPDATE ${an}.dim_customers SET expiration_date = expiration_date - interval '1 second'
      WHERE customer_key = $1 RETURNING customer_key`, [key]);
    expect(mid.rowCount).toBe(1);
    const r3 = await verifyNow();
    expect(r3.checks.find((c) => c.name.startsWith('dim_customers versions'))).toMatchObject({ failures: 1, samples: [{ key, customer_id: customer, problem: 'gap before the next version' }] });
    await pool.query(`UPDATE ${an}.dim_customers SET expiration_date = expiration_date + interval '1 second' WHERE customer_key = $1`, [key]);
    expect((await verifyNow()).ok).toBe(true);
  });

  it('with --source compares staging to the source tables and names a changed, a missing and an extra source row', async () => {
    // Source tables shaped like SPEC §1 (no triggers: the rows keep the simulated updated_at), holding the simulation's final rows.
    await sourcePool.query(`CREATE SCHEMA "${id}"`);
    for (const t of TABLE_NAMES) {
      const cols = Object.entries(TABLES[t].columns).map(([c, k]) => `${c} ${k}`).join(', ');
      await sourcePool.query(`CREATE TABLE "${id}".${t} (${cols}, PRIMARY KEY (${TABLES[t].key.join(', ')}))`);
      await sourcePool.query(`INSERT INTO "${id}".${t} SELECT * FROM jsonb_populate_recordset(NULL::"${id}".${t}, $1::jsonb)`, [JSON.stringify([...sim.rows[t].values()])]);
    }
    const clean = await runCli(['--source', '--source-schema', id]);
    expect(clean.stdout).toMatch(/staging vs source:\n {2}ok {4}stg_customers \(\d+ rows\)/);
    expect(clean.code).toBe(0);
    const changed = (await sourcePool.query(`UPDATE "${id}".order_items SET quantity = quantity + 1 WHERE (order_id, product_id) = (SELECT order_id, product_id FROM "${id}".order_items ORDER BY 1, 2 LIMIT 1) RETURNING order_id, product_id`)).rows[0];
    const gone = (await sourcePool.query(`DELETE FROM "${id}".products WHERE product_id = (SELECT max(product_id) FROM "${id}".products) RETURNING product_id`)).rows[0];
    await sourcePool.query(`INSERT INTO "${id}".customers (customer_id, email, customer_segment) VALUES (999999, 'x@y.z', 'gold')`);
    const { code, stdout } = await runCli(['--source', '--source-schema', id]);
    expect(code).toBe(1);
    expect(stdout).toContain(`FAIL  stg_order_items: 0 missing, 0 unexpected, 1 differing`);
    expect(stdout).toContain(`differing key(s): ${changed.order_id},${changed.product_id}`);
    expect(stdout).toContain(`FAIL  stg_products: 0 missing, 1 unexpected, 0 differing`);
    expect(stdout).toContain(`unexpected key(s): ${gone.product_id}`);
    expect(stdout).toContain(`FAIL  stg_customers: 1 missing, 0 unexpected, 0 differing`);
    expect(stdout).toMatch(/ok {4}stg_orders/);
  });

  it('names a customer whose CLV row is gone, and a fact line whose product is missing', async () => {
    const an = `"${schemas.analytics}"`;
    const clv = await pool.query(`DELETE FROM ${an}.customer_lifetime_value WHERE customer_id = (SELECT min(customer_id) FROM ${an}.customer_lifetime_value) RETURNING *`);
    const customer = String(clv.rows[0].customer_id);
    const prod = await pool.query(`DELETE FROM ${an}.dim_products WHERE product_id = (SELECT min(product_id) FROM ${an}.fact_orders) RETURNING *`);
    const r = await verifyNow();
    expect(r.checks.find((c) => c.kind === 'clv')).toMatchObject({ failures: 1, samples: [{ key: customer, problem: 'qualifying lines but no CLV row' }] });
    expect(r.checks.find((c) => c.name === 'fact_orders.product_key -> dim_products')!.failures).toBeGreaterThan(0);
    expect(r.recompute.find((d) => d.table === 'customer_lifetime_value')).toMatchObject({ missing: 1, keys: { missing: [customer] } });
    expect(r.recompute.find((d) => d.table === 'dim_products')).toMatchObject({ missing: 1, keys: { missing: [String(prod.rows[0].product_id)] } });
    const { code, stdout } = await runCli(['--samples', '2']);
    expect(code).toBe(1);
    expect(stdout).toContain(`FAIL  customer_lifetime_value rows exactly for customers with a qualifying line: 1 row(s) in customer_lifetime_value`);
    expect(stdout).toContain(`key=${customer} problem=qualifying lines but no CLV row`);
  });
});
