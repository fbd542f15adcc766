import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { replayWarehouse } from '../../src/rebuild/replay.ts';
import { runVerify } from '../../src/rebuild/verify.ts';
import { readStoredOffsets } from '../../src/sinks/postgres/batch-tx.ts';
import { createWarehousePool } from '../../src/sinks/postgres/pool.ts';
import { stagingRows } from '../../consumers/warehouse/staging-apply.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { ShopSim, type FixtureEvent } from '../helpers/debezium-fixtures.ts';
import { makeFixtureEnv, produceFixtures, type FixtureEnv } from '../helpers/fixture-env.ts';
import { stackEnv } from '../helpers/stack-env.ts';

/**
 * Replay on the real stack: Debezium Avro in Kafka, the real warehouse
 * consumer running as the live group, the rebuild into fresh schemas and
 * the swap, with readers and the live consumer active throughout.
 */
const log = createLogger('test-replay', process.env.TEST_LOG_LEVEL ?? 'warn');
const CLI = fileURLToPath(new URL('../../src/cli/replay.ts', import.meta.url));

type Env = FixtureEnv;

let kafka: Kafka;
let admin: Admin;
let producer: Producer;
let pool: pg.Pool;
let redis: Redis;
const envs: Env[] = [];

async function makeEnv(name: string): Promise<Env> {
  const env = await makeFixtureEnv(admin, pool, name, 2);
  envs.push(env);
  return env;
}

const produce = (env: Env, events: FixtureEvent[]) => produceFixtures(producer, env, events);

async function startLive(env: Env): Promise<{ consumer: WarehouseConsumer; stop: () => Promise<void> }> {
  const consumer = new WarehouseConsumer({
    kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis, schemas: env.schemas, group: env.id,
    topics: env.topics, redisKeyPrefix: `${env.id}:`, log, maxMessagesPerTx: 40, redisRetryMs: 200,
  });
  const ac = new AbortController();
  await consumer.start(ac.signal);
  return { consumer, stop: async () => { ac.abort(); await consumer.stop(); } };
}

async function stagingEqualsSim(env: Env, sim: ShopSim): Promise<void> {
  const client = await pool.connect();
  try {
    for (const t of TABLE_NAMES) {
      const cols = Object.keys(TABLES[t].columns);
      const got = (await stagingRows(client, env.schemas, t)).map((r) => JSON.stringify(cols.map((c) => r[c] ?? null))).sort();
      const want = [...sim.rows[t].values()].map((r) => JSON.stringify(cols.map((c) => (r[c] === null || r[c] === undefined ? null : String(r[c]))))).sort();
      expect(got, `stg_${t}`).toEqual(want);
    }
  } finally {
    client.release();
  }
}

async function verifyClean(env: Env): Promise<void> {
  const client = await pool.connect();
  try {
    const r = await runVerify(client, env.schemas);
    expect(r.recompute.filter((d) => d.missing + d.unexpected > 0)).toEqual([]);
    expect(r.checks.filter((c) => c.failures > 0)).toEqual([]);
  } finally {
    client.release();
  }
}

async function schemasLike(pattern: string): Promise<string[]> {
  return (await pool.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1`, [pattern])).rows.map((r) => r.nspname);
}

/** Rows of a table minus the ingestion time (a replay ingests again), as sorted JSON. */
async function tableRows(schema: string, table: string): Promise<string[]> {
  const cols = (await pool.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name <> '_ingested_at' ORDER BY ordinal_position`, [schema, table])).rows.map((r) => `"${r.column_name}"`);
  expect(cols.length, `${schema}.${table}`).toBeGreaterThan(0);
  return (await pool.query(`SELECT ${cols.join(', ')} FROM "${schema}".${table}`)).rows.map((r) => JSON.stringify(r)).sort();
}

beforeAll(async () => {
  kafka = new kafkajs.Kafka({ clientId: 'test-replay', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await Promise.all([admin.connect(), producer.connect()]);
  pool = createWarehousePool(stackEnv.warehouseUrl, 10);
  redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  for (const env of envs) {
    await admin.deleteTopics({ topics: [...env.topics, ...env.topics.map((t) => `${t}.dlq`)] }).catch(() => {});
    for (const s of await schemasLike(`${env.id}\\_%`)) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    const keys = await redis.keys(`${env.id}:*`);
    if (keys.length) await redis.del(...keys);
  }
  await Promise.all([admin.disconnect(), producer.disconnect()]);
  await pool.end();
  redis.disconnect();
});

describe('replay', () => {
  it('CLI from a timestamp, per key, live consumer running: rebuilt tables equal the live ones row for row, old ones kept, progress logged', async () => {
    const env = await makeEnv('rp_cli');
    const sim = new ShopSim(777);
    sim.randomWorkload(200);
    const before = Date.now() - 1000;
    await produce(env, sim.events);
    const live = await startLive(env);
    try {
      await waitCaughtUp(admin, pool, env.schemas, env.id, env.topics, { timeoutMs: 90_000 });
      const childEnv = {
        ...process.env, LOG_LEVEL: 'info', TOPIC_PREFIX: env.id, CONSUMER_GROUP: env.id, REDIS_KEY_PREFIX: `${env.id}:`,
        STAGING_SCHEMA: env.schemas.staging, ANALYTICS_SCHEMA: env.schemas.analytics, META_SCHEMA: env.schemas.meta,
        WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, KAFKA_BROKERS: stackEnv.kafkaBrokers.join(','), SCHEMA_REGISTRY_URL: stackEnv.registryUrl, REDIS_URL: stackEnv.redisUrl,
      };
      const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', CLI, '--group', env.id, '--from-timestamp', new Date(before).toISOString(), '--keep-old', '--json', '--per-key'],
          { env: childEnv, timeout: 110_000 }, (err, out, errOut) => resolve({ code: err ? Number(err.code ?? -1) : 0, stdout: out, stderr: errOut }));
      });
      expect(code, stderr).toBe(0);
      // stdout carries pino lines and the result, the one line without a level.
      const parsed = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const results = parsed.filter((l) => l.level === undefined);
      expect(results).toHaveLength(1);
      const result = results[0] as Record<string, unknown> & { kept: { staging: string; analytics: string } };
      const total = sim.events.length;
      expect(result).toMatchObject({ group: env.id, messages: total, clvChanged: 0, clvRemoved: 0 });
      // Progress as plain lines on stderr (not a terminal, src/cli/progress.ts): counts against the total, rate and ETA, then the final line.
      const progress = stderr.trim().split('\n');
      expect(progress.some((l) => /^replay: \d+\/\d+ messages \(\d+%\), \d+\/s, ETA [\d:?]+, elapsed \d+:\d\d$/.test(l)), stderr).toBe(true);
      expect(progress.some((l) => /^(replay|catching up with the live group): swapped in: \d+\/\d+ messages in /.test(l)), stderr).toBe(true);
      expect(stderr).not.toContain('\r');

      // The kept tables were the live ones; the swapped-in ones must be identical (CLV versions too: unchanged figures keep theirs).
      const kept = result.kept;
      for (const t of ['stg_customers', 'stg_products', 'stg_orders', 'stg_order_items', 'stg_tombstones', 'customer_changes', 'order_status_changes']) {
        expect(await tableRows(env.schemas.staging, t), t).toEqual(await tableRows(kept.staging, t));
      }
      for (const t of ['dim_date', 'dim_products', 'dim_customers', 'fact_orders', 'customer_lifetime_value', 'mart_sales', 'order_fulfillment']) {
        expect(await tableRows(env.schemas.analytics, t), t).toEqual(await tableRows(kept.analytics, t));
      }
      expect((await tableRows(env.schemas.analytics, 'fact_orders')).length).toBeGreaterThan(50);
      // Nothing of the rebuild is left but the swapped-in tables; the clickstream tables and the view over stg_orders stayed usable.
      expect(await schemasLike(`${env.id}\\_%\\_\\_rb\\_%`)).toEqual([]);
      expect((await pool.query(`SELECT count(*)::int n FROM "${env.schemas.meta}".consumer_offsets WHERE consumer_group <> $1`, [env.id])).rows[0].n).toBe(0);
      await pool.query(`SELECT * FROM "${env.schemas.analytics}".int_check_order`);
      const viewDeps = await pool.query(`SELECT DISTINCT n.nspname FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class c ON c.oid = d.refobjid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.ev_class = $1::regclass AND c.relname = 'stg_orders'`, [`"${env.schemas.analytics}".int_check_order`]);
      expect(viewDeps.rows.map((r) => r.nspname)).toEqual([env.schemas.staging]);
      await verifyClean(env);
      await stagingEqualsSim(env, sim);
      // The live group carries on from the rebuild's offsets.
      const more = new ShopSim(778);
      more.randomWorkload(5); // ids overlap the first sim's: updates and new rows for existing keys
      await produce(env, more.events.filter((e) => e.table === 'products'));
      await waitCaughtUp(admin, pool, env.schemas, env.id, env.topics, { timeoutMs: 60_000 });
      await verifyClean(env);
    } finally {
      await live.stop();
    }
  });

  it('from offset 0 (staging first, one refresh, then per key) while the live group consumes and readers query: swap is atomic, nothing lost or doubled, corrupted rows repaired, Redis follows', async () => {
    const env = await makeEnv('rp_live');
    const sim = new ShopSim(4242);
    sim.randomWorkload(700);
    const n = sim.events.length;
    const [p1, p2, p3] = [sim.events.slice(0, Math.floor(n * 0.4)), sim.events.slice(Math.floor(n * 0.4), Math.floor(n * 0.9)), sim.events.slice(Math.floor(n * 0.9))];
    await produce(env, p1);
    const live = await startLive(env);
    const an = `"${env.schemas.analytics}"`;
    const stg = `"${env.schemas.staging}"`;
    try {
      await waitCaughtUp(admin, pool, env.schemas, env.id, env.topics, { timeoutMs: 90_000 });
      // Damage the live tables the way a bug would: the replay must not carry it over.
      const bad = (await pool.query(`UPDATE ${an}.customer_lifetime_value SET total_revenue = total_revenue + 100
        WHERE customer_id = (SELECT min(customer_id) FROM ${an}.customer_lifetime_value) RETURNING customer_id::text`)).rows[0].customer_id;
      await pool.query(`UPDATE ${an}.fact_orders SET line_total = 0 WHERE order_item_key = (SELECT min(order_item_key) FROM ${an}.fact_orders)`);

      // Readers: every query must find every table, never empty, never an error.
      let reading = true;
      const seen = { reads: 0, errors: [] as string[], empty: 0 };
      const reader = async () => {
        while (reading) {
          try {
            const { rows } = await pool.query(`SELECT (SELECT count(*) FROM ${an}.fact_orders)::int f, (SELECT count(*) FROM ${an}.dim_customers)::int d,
              (SELECT count(*) FROM ${an}.customer_lifetime_value_now)::int c, (SELECT count(*) FROM ${stg}.stg_orders)::int o,
              (SELECT count(*) FROM ${an}.fact_orders x JOIN ${an}.dim_date dd ON dd.date_key = x.date_key)::int j`);
            const r = rows[0];
            if (!(r.f > 0 && r.d > 0 && r.c > 0 && r.o > 0 && r.j === r.f)) seen.empty++;
            seen.reads++;
          } catch (err) {
            // One error already fails the test. Stop here: a pool that fails
            // every query at once (ended after the test threw) would otherwise
            // spin this loop in microtasks, starving every timer, the test
            // timeout included (a CI run hung so).
            seen.errors.push((err as Error).message);
            return;
          }
        }
      };
      const readers = [reader(), reader(), reader()];
      // More source changes keep arriving during the replay and the swap, a couple every 100 ms:
      // slow enough that a loaded machine still swaps before the writer runs out.
      let producing = true;
      let sent = 0;
      const writer = (async () => {
        while (producing && sent < p2.length) {
          await produce(env, p2.slice(sent, sent + 2));
          sent = Math.min(p2.length, sent + 2);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const progress: number[] = [];
      const result = await replayWarehouse({
        pool, kafka, registry: createRegistry(stackEnv.registryUrl), redis, live: env.schemas, group: env.id, topics: env.topics,
        redisKeyPrefix: `${env.id}:`, from: { kind: 'offset', offset: 0n }, log, maxMessagesPerTx: 40, pollMs: 100,
        onProgress: (p) => progress.push(p.done),
      });
      const sentAtSwap = sent;
      producing = false;
      await writer;
      // The swap happened while changes were still arriving.
      expect(sentAtSwap).toBeGreaterThan(0);
      expect(sentAtSwap).toBeLessThan(p2.length);
      await produce(env, p2.slice(sent));
      const readsAtSwap = seen.reads;
      await produce(env, p3);
      await waitCaughtUp(admin, pool, env.schemas, env.id, env.topics, { timeoutMs: 90_000 });
      reading = false;
      await Promise.all(readers);

      expect(seen.errors).toEqual([]);
      expect(seen.empty).toBe(0);
      expect(readsAtSwap).toBeGreaterThan(10);
      expect(progress.length).toBeGreaterThan(0);
      expect(Object.keys(result.swap.liveOffsets).length).toBeGreaterThan(0);
      for (const [tp, off] of Object.entries(result.swap.liveOffsets)) expect(BigInt(result.swap.handedOver[tp]!) >= BigInt(off), tp).toBe(true);
      expect(result.swap.recreatedViews).toEqual([`${env.schemas.analytics}.int_check_order`]);
      // The two damaged figures were rebuilt; at least the CLV one changed and was queued for Redis.
      expect(result.swap.clvChanged).toBeGreaterThanOrEqual(1);
      await stagingEqualsSim(env, sim);
      await verifyClean(env);
      // The live group finished exactly at the end of every topic, from Postgres offsets consistent with the tables.
      const stored = await readStoredOffsets(pool, env.schemas, env.id);
      for (const topic of env.topics) {
        for (const p of await admin.fetchTopicOffsets(topic)) expect(stored.get(`${topic}/${p.partition}`) ?? '0', `${topic}/${p.partition}`).toBe(p.high);
      }
      expect(await schemasLike(`${env.id}\\_%\\_\\_%`)).toEqual([]);
      await live.consumer.redisSink.flush();
      expect(await diffRedisClv(pool, redis, env.schemas, `${env.id}:`)).toEqual({ missing: [], stale: [], extra: [] });
      const fixed = await pool.query(`SELECT total_revenue FROM ${an}.customer_lifetime_value WHERE customer_id = $1`, [bad]);
      expect(await redis.hget(`${env.id}:clv:${bad}`, 'total_revenue')).toBe(fixed.rows[0]?.total_revenue ?? null);
      expect(await redis.keys(`${env.id}:rebuild_*`)).toEqual([]);
    } finally {
      await live.stop();
    }
  });
});
