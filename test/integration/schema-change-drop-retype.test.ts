import kafkajs, { type Admin } from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { rewindGroup } from '../../src/rebuild/rewind.ts';
import { runVerify } from '../../src/rebuild/verify.ts';
import { namespaceLockSql } from '../../src/sinks/postgres/batch-tx.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import type { CaptureService } from '../../src/source/capture.ts';
import { createTestWarehouse, dropTestWarehouse } from '../helpers/pipeline-cleanup.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Issue 17, schema changes beyond an added column, handled as
 * docs/consumers.md ("Schema changes") says, on the real pipeline (source →
 * our capture → Kafka, Avro → the warehouse consumer):
 * - a dropped source column stays in staging: rows that had values keep
 *   them, rows written after the drop get null; nothing is dead-lettered;
 * - a retyped column keeps staging's first type: values that fit are
 *   written, one that does not is dead-lettered with Postgres's error, and
 *   the documented way forward (retype staging, rewind) makes staging equal
 *   to the source again.
 */
const log = createLogger('test-schema-change', process.env.TEST_LOG_LEVEL ?? 'warn');
let h: Harness;
let capture: CaptureService;
let admin: Admin;
let wh: pg.Pool;
let redis: Redis;
let schemas: WarehouseSchemas;
let topics: string[];
let group: string;
let stopConsumer: () => Promise<void>;

const stg = () => `"${schemas.staging}".stg_products`;
const caughtUp = () => waitCaughtUp(admin, wh, schemas, group, topics, { timeoutMs: 60_000 });

async function product(id: number, cols: string): Promise<Record<string, unknown> | undefined> {
  return (await wh.query(`SELECT ${cols} FROM ${stg()} WHERE product_id = $1`, [id])).rows[0];
}

async function verifySource() {
  const client = await wh.connect();
  const src = await h.pool.connect();
  try {
    return await runVerify(client, schemas, { source: { client: src, schema: h.id } });
  } finally {
    src.release();
    client.release();
  }
}

async function deadLetters(): Promise<Array<{ offset: string; error: string }>> {
  return (await wh.query(`SELECT "offset"::text AS offset, error FROM "${schemas.meta}".dead_letters WHERE consumer_group = $1 ORDER BY id`, [group])).rows;
}

beforeAll(async () => {
  h = await createHarness(uniqueId('schchg'));
  topics = TABLE_NAMES.map((t) => h.topic(t));
  await h.pool.query(`INSERT INTO ${h.id}.products (product_id, product_name, category, price, rating)
    SELECT g, 'p' || g, 'home', g + 0.5, 4.0 FROM generate_series(1, 30) g`);
  ({ schemas, pool: wh, group } = await createTestWarehouse(h.id));
  redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  const kafka = new kafkajs.Kafka({ clientId: 'test-schema-change', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  await admin.connect();
  capture = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'initial' }));
  await waitFor('capture topics', async () => { const t = new Set(await admin.listTopics()); return topics.every((x) => t.has(x)); }, 60_000);
  const consumer = new WarehouseConsumer({
    kafka, registry: createRegistry(stackEnv.registryUrl), pool: wh, redis, schemas, group, topics, redisKeyPrefix: `${h.id}:`, log, redisRetryMs: 200,
  });
  const ac = new AbortController();
  await consumer.start(ac.signal);
  stopConsumer = async () => { ac.abort(); await consumer.stop(); };
  await caughtUp();
}, 180_000);

afterAll(async () => {
  await stopConsumer?.().catch(() => {});
  await capture?.stop().catch(() => {});
  await dropTestWarehouse(wh, schemas, redis, h?.id);
  await wh?.end();
  redis.disconnect();
  await admin?.disconnect();
  await h?.cleanup();
});

describe('schema changes beyond an added column', () => {
  it('a dropped source column stays in staging with its values; rows written after the drop get null; nothing dead-lettered; verify --source clean', async () => {
    const s = h.id;
    await h.pool.query(`ALTER TABLE ${s}.products ADD COLUMN weight_g int`);
    await h.pool.query(`UPDATE ${s}.products SET weight_g = product_id * 10`);
    await waitFor('weight_g in staging', async () => (await product(30, 'weight_g').catch(() => undefined))?.weight_g === 300, 60_000);

    await h.pool.query(`ALTER TABLE ${s}.products DROP COLUMN weight_g`);
    await h.pool.query(`UPDATE ${s}.products SET price = 99.5 WHERE product_id = 1`);
    await h.pool.query(`INSERT INTO ${s}.products (product_id, product_name, category, price, rating) VALUES (100, 'after drop', 'home', 1.5, 3.0)`);
    // (the lag alone can read 0 before the capture has published the changes)
    await waitFor('the changes after the drop applied', async () => (await product(100, 'product_id')) !== undefined, 60_000);
    await caughtUp();
    expect(await product(1, 'price::text, weight_g')).toEqual({ price: '99.50', weight_g: 10 });
    expect(await product(2, 'weight_g')).toEqual({ weight_g: 20 });
    expect(await product(100, 'product_name, weight_g')).toEqual({ product_name: 'after drop', weight_g: null });
    expect(await deadLetters()).toEqual([]);
    const r = await verifySource();
    expect(r.source!.filter((d) => d.missing + d.unexpected + d.differing > 0)).toEqual([]);
    expect(r.checks.filter((c) => c.failures > 0)).toEqual([]);
  }, 120_000);

  it('a retyped column keeps staging\'s type: a value that fits is written, one that does not is dead-lettered; retype staging and rewind: equal to the source', async () => {
    const s = h.id;
    await h.pool.query(`ALTER TABLE ${s}.products ADD COLUMN stock int`);
    await h.pool.query(`UPDATE ${s}.products SET stock = product_id`);
    await waitFor('stock in staging', async () => (await product(30, 'stock').catch(() => undefined))?.stock === 30, 60_000);

    await h.pool.query(`ALTER TABLE ${s}.products ALTER COLUMN stock TYPE bigint`);
    await h.pool.query(`UPDATE ${s}.products SET stock = 12345 WHERE product_id = 2`);
    await waitFor('the bigint value that fits', async () => (await product(2, 'stock'))?.stock === 12345, 60_000);
    expect(await product(2, 'stock')).toEqual({ stock: 12345 });
    const types = async () => (await wh.query(`SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'stg_products' AND column_name = 'stock'`, [schemas.staging])).rows[0]?.data_type;
    expect(await types()).toBe('integer');

    // A value the staging type cannot hold: that message is dead-lettered, the group goes on.
    const before = Date.now() - 1000;
    await h.pool.query(`UPDATE ${s}.products SET stock = 5000000000 WHERE product_id = 3`);
    await h.pool.query(`UPDATE ${s}.products SET stock = 77 WHERE product_id = 4`);
    await waitFor('the change after the bad one applied', async () => (await product(4, 'stock'))?.stock === 77, 60_000);
    await caughtUp();
    const dl = await deadLetters();
    expect(dl).toHaveLength(1);
    expect(dl[0]!.error).toMatch(/out of range for type integer/);
    expect(await product(3, 'stock')).toEqual({ stock: 3 });
    expect(await product(4, 'stock')).toEqual({ stock: 77 });
    const bad = await verifySource();
    expect(bad.source!.find((d) => d.table === 'products')).toMatchObject({ differing: 1 });

    // The way forward of docs/consumers.md: retype staging, rewind to before the dead-lettered message.
    await wh.query(`ALTER TABLE ${stg()} ALTER COLUMN stock TYPE bigint`);
    const moved = await rewindGroup({ pool: wh, admin, schemas, group, topics, to: { kind: 'timestamp', ms: before }, lockKeys: [namespaceLockSql(schemas).params[0]!], log });
    expect(moved.moved.some((m) => m.topic === h.topic('products'))).toBe(true);
    await waitFor('the rewind to be re-applied', async () => (await wh.query(`SELECT count(*)::int n FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1 AND rewind_pending`, [group])).rows[0].n === 0, 60_000);
    await caughtUp();
    expect(await product(3, 'stock::text')).toEqual({ stock: '5000000000' });
    const r = await verifySource();
    expect(r.source!.filter((d) => d.missing + d.unexpected + d.differing > 0)).toEqual([]);
    expect(r.checks.filter((c) => c.failures > 0)).toEqual([]);
    expect(r.recompute.filter((d) => d.missing + d.unexpected > 0)).toEqual([]);
  }, 180_000);
});
