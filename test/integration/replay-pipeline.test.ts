import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import kafkajs, { type Admin, type Kafka } from 'kafkajs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { groupLag } from '../../src/consumer/lag.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { TrafficGenerator } from '../../src/generator/writer.ts';
import { ReplayRefusedError } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { replayGuardKey, replayWarehouse } from '../../src/rebuild/replay.ts';
import { rewindGroup } from '../../src/rebuild/rewind.ts';
import { runVerify, type VerifyReport } from '../../src/rebuild/verify.ts';
import { namespaceLockSql, readStoredOffsets } from '../../src/sinks/postgres/batch-tx.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import type { CaptureService } from '../../src/source/capture.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Replay semantics on the whole pipeline (source → our capture → Kafka →
 * the warehouse consumer): a rewind to a timestamp re-applies onto the live
 * tables and they end identical; a rebuild from the earliest offset, also
 * after a re-snapshot, swaps in tables equal to the source; columns added
 * to the source under load reach staging and history. Every step ends with
 * `verify` clean against the batch recomputation and the source.
 */
const CLI = fileURLToPath(new URL('../../src/cli/replay.ts', import.meta.url));
const CAPTURE_CLI = fileURLToPath(new URL('../../src/cli/capture.ts', import.meta.url));
const log = createLogger('test-replay-pipeline', process.env.TEST_LOG_LEVEL ?? 'warn');
let h: Harness;
let capture: CaptureService;
let kafka: Kafka;
let admin: Admin;
let wh: pg.Pool;
let redis: Redis;
let schemas: WarehouseSchemas;
let topics: string[];
let group: string;
let gen: TrafficGenerator;
let live: { consumer: WarehouseConsumer; stop: () => Promise<void> };

async function startLive() {
  const consumer = new WarehouseConsumer({
    kafka, registry: createRegistry(stackEnv.registryUrl), pool: wh, redis, schemas, group, topics, redisKeyPrefix: `${h.id}:`, log, maxMessagesPerTx: 60, redisRetryMs: 200,
  });
  const ac = new AbortController();
  await consumer.start(ac.signal);
  return { consumer, stop: async () => { ac.abort(); await consumer.stop(); } };
}

async function verify(): Promise<VerifyReport> {
  const client = await wh.connect();
  const src = await h.pool.connect();
  try {
    return await runVerify(client, schemas, { source: { client: src, schema: h.id } });
  } finally {
    src.release();
    client.release();
  }
}

/** The source is quiet: wait for the pipeline to catch up, then everything must be exact. */
async function settledAndClean(what: string): Promise<void> {
  await waitFor(`${what}: caught up and staging equal to the source`, async () => {
    if (await groupLag(admin, wh, schemas, group, topics) !== 0) return false;
    const r = await verify();
    return r.source!.every((d) => d.missing + d.unexpected + d.differing === 0);
  }, 120_000).catch(() => undefined);
  const r = await verify();
  expect(r.source!.filter((d) => d.missing + d.unexpected + d.differing > 0), `${what}: verify --source`).toEqual([]);
  expect(r.recompute.filter((d) => d.missing + d.unexpected > 0), `${what}: derived tables vs batch recomputation`).toEqual([]);
  expect(r.checks.filter((c) => c.failures > 0), `${what}: data tests`).toEqual([]);
  await live.consumer.redisSink.flush();
  expect(await diffRedisClv(wh, redis, schemas, `${h.id}:`), `${what}: Redis`).toEqual({ missing: [], stale: [], extra: [] });
}

/** Every row of every warehouse table (minus ingestion times), to show a rewind leaves them identical. */
async function snapshotTables(): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const schema of [schemas.staging, schemas.analytics]) {
    const { rows: tables } = await wh.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1`, [schema]);
    for (const { table_name: t } of tables) {
      const cols = (await wh.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name <> '_ingested_at' ORDER BY ordinal_position`, [schema, t])).rows.map((r) => `"${r.column_name}"`);
      out[`${schema}.${t}`] = (await wh.query(`SELECT ${cols.join(', ')} FROM "${schema}"."${t}"`)).rows.map((r) => JSON.stringify(r)).sort();
    }
  }
  return out;
}

function replayCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env, LOG_LEVEL: 'warn', TOPIC_PREFIX: h.id, SOURCE_SCHEMA: h.id, CONSUMER_GROUP: group, REDIS_KEY_PREFIX: `${h.id}:`,
    STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta,
    WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, KAFKA_BROKERS: stackEnv.kafkaBrokers.join(','), SCHEMA_REGISTRY_URL: stackEnv.registryUrl, REDIS_URL: stackEnv.redisUrl,
  };
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
  });
}

async function traffic(orders: number): Promise<void> {
  for (let i = 0; i < orders; i += 10) {
    await gen.placeOrders(10, 2);
    await gen.sideEffects();
  }
}

let lastSignalLsn = '0/0';

/**
 * Until the capture has no re-snapshot in progress (its last chunk is in Kafka): the slot confirmed past the
 * last signal (a request is recorded before that) and no request row is left, as `snapshot --wait` decides.
 */
async function resnapshotsDone(): Promise<void> {
  await waitFor('re-snapshots finished', async () => {
    const { rows } = await h.pool.query(`SELECT (SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1) AS past,
      (SELECT count(*)::int FROM ${h.id}_meta.capture_incremental_snapshots) AS n`, [h.id, lastSignalLsn]);
    return rows[0].past === true && rows[0].n === 0;
  }, 120_000);
}

/** Per table, so a failure names the table. */
function expectSameTables(after: Record<string, string[]>, before: Record<string, string[]>): void {
  expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
  for (const t of Object.keys(before)) expect(after[t], t).toEqual(before[t]);
}

/** `npx tsx src/cli/capture.ts resnapshot <schema.table>`, the existing command, against the test's source schema. */
function resnapshot(table: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', CAPTURE_CLI, 'resnapshot', `${h.id}.${table}`], { env: { ...process.env, ...h.env }, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`resnapshot ${table}: ${stderr}`));
      else if (!/re-snapshot of .* requested at/.test(stdout)) reject(new Error(`resnapshot ${table}: ${stdout}`));
      else {
        lastSignalLsn = /requested at (\S+)/.exec(stdout)![1]!;
        resolve();
      }
    });
  });
}

beforeAll(async () => {
  h = await createHarness(uniqueId('rpp'));
  schemas = { staging: `${h.id}_stg`, analytics: `${h.id}_an`, meta: `${h.id}_wmeta` };
  topics = TABLE_NAMES.map((t) => h.topic(t));
  group = `${h.id}_wh`;
  kafka = new kafkajs.Kafka({ clientId: 'test-replay-pipeline', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  await admin.connect();
  wh = createWarehousePool(stackEnv.warehouseUrl, 8);
  redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  await migrate(wh, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  gen = new TrafficGenerator(h.pool, { schema: h.id, seed: 17 });
  await gen.seedCatalog(80, 40);
  await traffic(80);
  capture = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'initial' }));
  await waitFor('capture topics', async () => { const t = new Set(await admin.listTopics()); return topics.every((x) => t.has(x)); }, 60_000);
  live = await startLive();
  await traffic(60);
}, 180_000);

afterAll(async () => {
  await live?.stop().catch(() => {});
  await capture?.stop().catch(() => {});
  if (wh && schemas) {
    const { rows } = await wh.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, [`${h.id}\\_%`]);
    for (const r of rows) await wh.query(`DROP SCHEMA IF EXISTS "${r.nspname}" CASCADE`);
    await wh.end();
  }
  const keys = await redis.keys(`${h.id}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  await admin?.disconnect();
  await h?.cleanup();
});

describe('replay on the whole pipeline', () => {
  it('rewind to a timestamp, group running: every change since is re-applied onto the live tables and they end identical; again under load: verify clean', async () => {
    await settledAndClean('before the rewind');
    const t = Date.now();
    await new Promise((r) => setTimeout(r, 50));
    await traffic(60);
    await settledAndClean('after more traffic');
    const before = await snapshotTables();

    // What a Kafka user's --reset-offsets --to-datetime is here: the CLI, first as a dry run.
    const stored = await readStoredOffsets(wh, schemas, group);
    const dry = await replayCli(['--group', group, '--rewind', '--to-datetime', new Date(t).toISOString(), '--dry-run', '--json']);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    const planned = JSON.parse(dry.stdout.trim().split('\n').pop()!) as { dryRun: boolean; moved: unknown[]; messages: number };
    expect(planned.dryRun).toBe(true);
    expect(await readStoredOffsets(wh, schemas, group)).toEqual(stored);
    const run = await replayCli(['--group', group, '--rewind', '--to-datetime', new Date(t).toISOString(), '--json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const r = JSON.parse(run.stdout.trim().split('\n').pop()!) as { moved: Array<{ topic: string; from: string; to: string }>; messages: number };
    expect(r.moved.length).toBeGreaterThan(0);
    expect(r.moved).toEqual(planned.moved);
    expect(r.messages).toBeGreaterThan(50);
    for (const m of r.moved) expect(BigInt(m.to) < BigInt(m.from), m.topic).toBe(true);
    // Every moved partition is re-applied: the flag clears only when a batch starting at or before the rewound offset commits.
    await waitFor('the rewind to be re-applied', async () => (await wh.query(`SELECT count(*)::int n FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1 AND rewind_pending`, [group])).rows[0].n === 0, 60_000);
    await settledAndClean('after the rewind');
    expectSameTables(await snapshotTables(), before);

    // Under load: a rewind while changes keep arriving and batches are in flight.
    const t2 = Date.now();
    const load = traffic(80);
    await new Promise((res) => setTimeout(res, 700));
    const r2 = await rewindGroup({ pool: wh, admin, schemas, group, topics, to: { kind: 'timestamp', ms: t2 - 2000 }, lockKeys: [namespaceLockSql(schemas).params[0]!], log });
    expect(r2.moved.length).toBeGreaterThan(0);
    await load;
    await settledAndClean('after a rewind under load');
  }, 300_000);

  it('rebuild from the earliest offset while the group runs: swapped-in tables equal the source and the batch recomputation', async () => {
    const load = traffic(40);
    const result = await replayWarehouse({
      pool: wh, kafka, registry: createRegistry(stackEnv.registryUrl), redis, live: schemas, group, topics,
      redisKeyPrefix: `${h.id}:`, from: { kind: 'earliest' }, log, maxMessagesPerTx: 200, pollMs: 100,
    });
    await load;
    expect(result.messages).toBeGreaterThan(500);
    await settledAndClean('after the rebuild');
  }, 300_000);

  it('a rebuild from a timestamp after the log start is refused and nothing is swapped; a rewind beside a running rebuild is refused', async () => {
    const stored = await readStoredOffsets(wh, schemas, group);
    await expect(replayWarehouse({
      pool: wh, kafka, registry: createRegistry(stackEnv.registryUrl), redis, live: schemas, group, topics,
      redisKeyPrefix: `${h.id}:`, from: { kind: 'timestamp', ms: Date.now() - 5000 }, log,
    })).rejects.toThrow(/--rewind --to-datetime/);
    // A rewind beside a running rebuild would be undone by its swap: refused.
    const guard = await wh.connect();
    try {
      await guard.query('SELECT pg_advisory_lock(hashtext($1))', [replayGuardKey(schemas)]);
      await expect(rewindGroup({ pool: wh, admin, schemas, group, topics, to: { kind: 'earliest' }, lockKeys: [namespaceLockSql(schemas).params[0]!], log }))
        .rejects.toThrow(/a rebuild of .* is running/);
      await guard.query('SELECT pg_advisory_unlock(hashtext($1))', [replayGuardKey(schemas)]);
    } finally {
      guard.release();
    }
    expect(await readStoredOffsets(wh, schemas, group)).toEqual(stored);
    const partial = await replayCli(['--group', group, '--from-timestamp', new Date(Date.now() - 5000).toISOString(), '--allow-partial']);
    expect(partial.code).not.toBe(0);
    expect(partial.stderr).toMatch(/--allow-partial was removed.*--rewind --to-datetime/);
    expect(await readStoredOffsets(wh, schemas, group)).toEqual(stored);
    await settledAndClean('after the refused rebuild');
  }, 120_000);

  it('columns added to every source table under load reach staging and history with the source values; verify --source clean', async () => {
    const s = h.id;
    const load = traffic(60);
    await h.pool.query(`ALTER TABLE ${s}.customers ADD COLUMN loyalty_tier text`);
    await h.pool.query(`ALTER TABLE ${s}.products ADD COLUMN weight_g int`);
    await h.pool.query(`ALTER TABLE ${s}.orders ADD COLUMN gift_note text, ADD COLUMN promised_at timestamptz`);
    await h.pool.query(`ALTER TABLE ${s}.order_items ADD COLUMN tax_rate numeric(5,4)`);
    await h.pool.query(`UPDATE ${s}.customers SET loyalty_tier = CASE WHEN customer_id % 2 = 0 THEN 'gold' ELSE 'none' END WHERE customer_id % 3 <> 1`);
    await h.pool.query(`UPDATE ${s}.products SET weight_g = product_id * 10 WHERE product_id % 2 = 0`);
    await h.pool.query(`UPDATE ${s}.orders SET gift_note = 'for ' || order_id, promised_at = order_date + interval '3 days 0.123456 seconds' WHERE order_id % 4 = 0`);
    await h.pool.query(`UPDATE ${s}.order_items SET tax_rate = 0.0825 WHERE order_id % 5 = 0`);
    await load;
    await settledAndClean('after adding columns');
    const stg = `"${schemas.staging}"`;
    const count = async (sql: string) => (await wh.query(sql)).rows[0].n as number;
    expect(await count(`SELECT count(*)::int n FROM ${stg}.stg_customers WHERE loyalty_tier = 'gold'`)).toBeGreaterThan(5);
    expect(await count(`SELECT count(*)::int n FROM ${stg}.stg_products WHERE weight_g IS NOT NULL`)).toBeGreaterThan(5);
    expect(await count(`SELECT count(*)::int n FROM ${stg}.stg_orders WHERE gift_note IS NOT NULL AND promised_at IS NOT NULL`)).toBeGreaterThan(5);
    expect(await count(`SELECT count(*)::int n FROM ${stg}.stg_order_items WHERE tax_rate = 0.0825`)).toBeGreaterThan(5);
    expect(await count(`SELECT count(*)::int n FROM ${stg}.customer_changes WHERE loyalty_tier = 'gold'`)).toBeGreaterThan(5);
    // History carries the source's values: each customer's latest change holds what staging (equal to the source, above) holds.
    expect(await count(`SELECT count(*)::int n FROM ${stg}.stg_customers c CROSS JOIN LATERAL (
      SELECT h.loyalty_tier FROM ${stg}.customer_changes h WHERE h.customer_id = c.customer_id ORDER BY h.seq DESC, h.lsn DESC LIMIT 1) h
      WHERE h.loyalty_tier IS DISTINCT FROM c.loyalty_tier`)).toBe(0);
    expect(await count(`SELECT count(*)::int n FROM ${stg}.stg_orders o CROSS JOIN LATERAL (
      SELECT h.gift_note FROM ${stg}.order_status_changes h WHERE h.order_id = o.order_id ORDER BY h.seq DESC, h.lsn DESC LIMIT 1) h
      WHERE h.gift_note IS DISTINCT FROM o.gift_note`)).toBe(0);
    expect(await count(`SELECT count(*)::int n FROM ${stg}.order_status_changes WHERE gift_note IS NOT NULL`)).toBeGreaterThan(5);
    const types = await wh.query(`SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = $1
      AND column_name IN ('loyalty_tier', 'weight_g', 'gift_note', 'promised_at', 'tax_rate') ORDER BY 1, 2`, [schemas.staging]);
    expect(types.rows).toEqual([
      { table_name: 'customer_changes', column_name: 'loyalty_tier', data_type: 'text' },
      { table_name: 'order_status_changes', column_name: 'gift_note', data_type: 'text' },
      { table_name: 'order_status_changes', column_name: 'promised_at', data_type: 'timestamp with time zone' },
      { table_name: 'stg_customers', column_name: 'loyalty_tier', data_type: 'text' },
      { table_name: 'stg_order_items', column_name: 'tax_rate', data_type: 'numeric' },
      { table_name: 'stg_orders', column_name: 'gift_note', data_type: 'text' },
      { table_name: 'stg_orders', column_name: 'promised_at', data_type: 'timestamp with time zone' },
      { table_name: 'stg_products', column_name: 'weight_g', data_type: 'integer' },
    ]);
  }, 300_000);

  it('a column added with a default, then a re-snapshot, then a rebuild from earliest: staging equals the source, derived tables the batch recomputation', async () => {
    const s = h.id;
    await h.pool.query(`ALTER TABLE ${s}.customers ADD COLUMN loyalty_points int NOT NULL DEFAULT 0`);
    await h.pool.query(`UPDATE ${s}.customers SET loyalty_points = 50 WHERE customer_id % 7 = 0`);
    // Rows untouched since the ALTER hold the default in the source without a change event: the re-snapshot brings them.
    const beforeResnapshot = Date.now();
    await new Promise((r) => setTimeout(r, 50));
    for (const t of TABLE_NAMES) await resnapshot(t);
    await resnapshotsDone();
    await settledAndClean('after the re-snapshot');
    expect((await wh.query(`SELECT count(*)::int n FROM "${schemas.staging}".stg_customers WHERE loyalty_points = 0`)).rows[0].n).toBeGreaterThan(10);

    // A rewind to before the re-snapshot: its rows and everything since are re-applied onto the live tables, which end identical.
    const tables = await snapshotTables();
    const rw = await rewindGroup({ pool: wh, admin, schemas, group, topics, to: { kind: 'timestamp', ms: beforeResnapshot }, lockKeys: [namespaceLockSql(schemas).params[0]!], log });
    expect(new Set(rw.moved.map((m) => m.topic))).toEqual(new Set(topics));
    expect(rw.messages).toBeGreaterThan(100);
    await waitFor('the rewind over the re-snapshot to be re-applied', async () => (await wh.query(`SELECT count(*)::int n FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1 AND rewind_pending`, [group])).rows[0].n === 0, 60_000);
    await settledAndClean('after a rewind over the re-snapshot');
    expectSameTables(await snapshotTables(), tables);
    const result = await replayWarehouse({
      pool: wh, kafka, registry: createRegistry(stackEnv.registryUrl), redis, live: schemas, group, topics,
      redisKeyPrefix: `${h.id}:`, from: { kind: 'earliest' }, log, maxMessagesPerTx: 200, pollMs: 100,
    });
    expect(result.messages).toBeGreaterThan(500);
    await settledAndClean('after the rebuild following the re-snapshot');
  }, 300_000);

  it('a rebuild after the log start moved, lacking rows the live tables hold, is refused and nothing swapped; after a re-snapshot it is swapped in', async () => {
    await settledAndClean('before the trim');
    // Every customer's changes removed from Kafka after the live group applied them (what delete retention does): no retention gap for the group.
    // A compact-only topic refuses record deletion, so first what an operator adding time retention sets: compact,delete.
    const ct = h.topic('customers');
    await admin.alterConfigs({ validateOnly: false, resources: [{ type: 2, name: ct, configEntries: [{ name: 'cleanup.policy', value: 'compact,delete' }] }] });
    await waitFor('compact,delete in force', async () => {
      const c = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: ct, configNames: ['cleanup.policy'] }] });
      return c.resources[0]!.configEntries[0]!.configValue === 'compact,delete';
    }, 30_000);
    for (const o of await admin.fetchTopicOffsets(ct)) await admin.deleteTopicRecords({ topic: ct, partitions: [{ partition: o.partition, offset: o.high }] });
    const before = await snapshotTables();
    const stored = await readStoredOffsets(wh, schemas, group);
    const rebuild = () => replayWarehouse({
      pool: wh, kafka, registry: createRegistry(stackEnv.registryUrl), redis, live: schemas, group, topics,
      redisKeyPrefix: `${h.id}:`, from: { kind: 'earliest' }, log, maxMessagesPerTx: 200, pollMs: 100,
    });
    const err = await rebuild().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ReplayRefusedError);
    expect(String((err as Error).message)).toMatch(/lack rows the live ones hold \(stg_customers: \d+.*re-snapshot/);
    expectSameTables(await snapshotTables(), before);
    expect(await readStoredOffsets(wh, schemas, group)).toEqual(stored);
    const left = await wh.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, [`${h.id}\\_%\\_\\_rb\\_%`]);
    expect(left.rows).toEqual([]);

    // The way back of docs/operations.md: re-snapshot, let the live group catch up, rebuild.
    await resnapshot('customers');
    await resnapshotsDone();
    await settledAndClean('after re-snapshotting customers');
    const result = await rebuild();
    expect(result.messages).toBeGreaterThan(0);
    await settledAndClean('after the rebuild following the trim and the re-snapshot');
  }, 300_000);
});
