import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { TABLES, TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { groupLag, waitCaughtUp } from '../../src/consumer/lag.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stagingRows } from '../../consumers/warehouse/staging-apply.ts';
import { ClvRedisSink, clvDeletedKey, clvKey } from '../../src/sinks/redis/clv-redis.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import { registerTable, ShopSim, type FixtureEvent } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The warehouse consumer against the real stack: Debezium-shaped Avro in
 * Kafka (registered in the schema registry), staging/analytics in Postgres,
 * CLV in Redis. Each test has its own topics, group, schemas and key prefix.
 */
const log = createLogger('test-consumer', process.env.TEST_LOG_LEVEL ?? 'warn');
const CLV_SCRIPT = readFileSync(fileURLToPath(new URL('../../src/sinks/redis/clv-write.lua', import.meta.url)), 'utf8');

export interface Env {
  id: string;
  prefix: string;
  group: string;
  redisPrefix: string;
  schemas: WarehouseSchemas;
  topics: string[];
  encoders: Map<TableName, Awaited<ReturnType<typeof registerTable>>>;
}

let kafka: Kafka;
let admin: Admin;
let producer: Producer;
let pool: pg.Pool;
let redis: Redis;
const envs: Env[] = [];

async function makeEnv(name: string, partitions: number): Promise<Env> {
  const id = uniqueId(name);
  const env: Env = {
    id, prefix: id, group: id, redisPrefix: `${id}:`,
    schemas: { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` },
    topics: TABLE_NAMES.map((t) => `${id}.public.${t}`), encoders: new Map(),
  };
  envs.push(env);
  await admin.createTopics({ topics: env.topics.map((topic) => ({ topic, numPartitions: partitions })), waitForLeaders: true });
  const registry = createRegistry(stackEnv.registryUrl);
  for (const t of TABLE_NAMES) env.encoders.set(t, await registerTable(registry, env.prefix, t));
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(env.schemas) });
  return env;
}

export async function produceEvents(p: Producer, env: Env, events: FixtureEvent[], duplicateRate = 0): Promise<void> {
  const byTopic = new Map<string, Array<{ key: Buffer | null; value: Buffer }>>();
  for (const ev of events) {
    const enc = env.encoders.get(ev.table)!;
    const row = ev.after ?? ev.before;
    const msg = { key: row ? enc.encodeKey(row) : null, value: enc.encodeValue(ev) };
    const list = byTopic.get(enc.topic) ?? [];
    list.push(msg);
    // A producer retry without idempotence: the same event again at a later offset.
    if (duplicateRate > 0 && Math.random() < duplicateRate) list.push(msg);
    byTopic.set(enc.topic, list);
  }
  await p.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
}

function startConsumer(env: Env): WarehouseConsumer {
  const c = new WarehouseConsumer({
    kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis, schemas: env.schemas, group: env.group,
    topics: env.topics, redisKeyPrefix: env.redisPrefix, log, maxMessagesPerTx: 50,
  });
  return c;
}

async function stagingMatchesSim(env: Env, sim: ShopSim): Promise<void> {
  const client = await pool.connect();
  try {
    for (const t of TABLE_NAMES) {
      const got = (await stagingRows(client, env.schemas, t)).map((r) => JSON.stringify(Object.keys(TABLES[t].columns).map((c) => r[c] ?? null))).sort();
      const want = [...sim.rows[t].values()].map((r) => JSON.stringify(Object.keys(TABLES[t].columns).map((c) => (r[c] === null || r[c] === undefined ? null : String(r[c]))))).sort();
      expect(got, `stg_${t}`).toEqual(want);
    }
  } finally {
    client.release();
  }
}

beforeAll(async () => {
  kafka = new kafkajs.Kafka({ clientId: 'test-consumer-warehouse', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await Promise.all([admin.connect(), producer.connect()]);
  pool = createWarehousePool(stackEnv.warehouseUrl, 6);
  redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  // Only topics that exist: kafkajs retries a delete of a missing one for a long time.
  const existing = new Set(await admin.listTopics());
  for (const env of envs) {
    const topics = [...env.topics, ...env.topics.map((t) => `${t}.dlq`)].filter((t) => existing.delete(t));
    if (topics.length) await admin.deleteTopics({ topics }).catch(() => {});
    await pool.query(`DROP SCHEMA IF EXISTS "${env.schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${env.schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${env.schemas.meta}" CASCADE`);
    const keys = await redis.keys(`${env.redisPrefix}*`);
    if (keys.length) await redis.del(...keys);
  }
  await Promise.all([admin.disconnect(), producer.disconnect()]);
  await pool.end();
  redis.disconnect();
});

describe('warehouse consumer', () => {
  it('keeps stg_customers equal to Debezium customer inserts, updates and deletes, microseconds kept; bad bytes go to the DLQ', async () => {
    const env = await makeEnv('cons_stg', 1);
    const sim = new ShopSim(11);
    sim.transaction(() => {
      for (let i = 0; i < 4; i++) sim.insertCustomer();
    });
    sim.transaction(() => sim.updateCustomer('1', { email: '  Changed@Example.com', customer_segment: 'gold' }));
    sim.transaction(() => sim.deleteCustomer('2'));
    sim.transaction(() => sim.updateCustomer('3', { last_name: 'Zed' }));
    const customerEvents = sim.events.filter((e) => e.table === 'customers');
    expect(customerEvents.map((e) => e.op)).toEqual(['c', 'c', 'c', 'c', 'u', 'd', 'u']);
    const topic = env.encoders.get('customers')!.topic;
    await produceEvents(producer, env, customerEvents.slice(0, 5));
    // Garbage, an unknown schema id and a tombstone between valid events.
    const unknownId = Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 1, 2, 3]);
    await producer.send({ topic, acks: -1, messages: [
      { key: 'k1', value: Buffer.from('not avro at all'), headers: { origin: 'test' } },
      { key: 'k2', value: unknownId },
      { key: env.encoders.get('customers')!.encodeKey({ customer_id: 2 }), value: null },
    ] });
    await produceEvents(producer, env, customerEvents.slice(5));

    const consumer = startConsumer(env);
    const ac = new AbortController();
    await consumer.start(ac.signal);
    try {
      await waitCaughtUp(admin, pool, env.schemas, env.group, env.topics, { timeoutMs: 60_000 });
    } finally {
      ac.abort();
      await consumer.stop();
      await consumer.stop(); // safe twice
    }
    await stagingMatchesSim(env, sim);
    const { rows } = await pool.query(`SELECT customer_id::text, to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') AS t, email_normalized, full_name
      FROM "${env.schemas.staging}".stg_customers ORDER BY customer_id`);
    expect(rows.map((r) => r.customer_id)).toEqual(['1', '3', '4']);
    expect(rows[0].email_normalized).toBe('changed@example.com');
    expect(rows[1].full_name).toMatch(/ Zed$/);
    const simUpdated = String(sim.rows.customers.get('1')!.updated_at);
    expect(rows[0].t).toBe(simUpdated.slice(11, 26));
    expect(simUpdated.slice(20, 26)).not.toBe('000000');

    // The DLQ holds both bad messages with their original bytes and provenance.
    const dead = await pool.query(`SELECT "offset"::int, dlq_topic, error FROM "${env.schemas.meta}".dead_letters ORDER BY "offset"`);
    expect(dead.rows.map((r) => [r.offset, r.dlq_topic])).toEqual([[5, `${topic}.dlq`], [6, `${topic}.dlq`]]);
    expect(dead.rows[0].error).toMatch(/DECODE_FAILED/);
    const dlqConsumer = kafka.consumer({ groupId: `${env.id}-dlq-reader` });
    await dlqConsumer.connect();
    await dlqConsumer.subscribe({ topic: `${topic}.dlq`, fromBeginning: true });
    const got: Array<{ value: string; headers: Record<string, string> }> = [];
    await dlqConsumer.run({ eachMessage: async ({ message }) => {
      got.push({ value: message.value!.toString('hex'), headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])) });
    } });
    const until = Date.now() + 30_000;
    while (got.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    await dlqConsumer.disconnect();
    expect(got.map((g) => g.value)).toEqual([Buffer.from('not avro at all').toString('hex'), unknownId.toString('hex')]);
    expect(got[0]!.headers).toMatchObject({ origin: 'test', 'dlq.source.topic': topic, 'dlq.source.partition': '0', 'dlq.source.offset': '5' });
    expect(got[1]!.headers['dlq.error']).toMatch(/schema id/);
  });

  it('ends with every table equal to the batch recomputation and Redis equal to Postgres after a randomized, redelivered workload, and a replay from offset 0 rebuilds the same tables', async () => {
    const env = await makeEnv('cons_rand', 3);
    const sim = new ShopSim(424242);
    sim.randomWorkload(300);
    // Dimension changes arrive late: orders and lines first, customers and products after.
    const late = (e: FixtureEvent) => e.table === 'customers' || e.table === 'products';
    const half = Math.floor(sim.events.length / 2);
    const consumer = startConsumer(env);
    const ac = new AbortController();
    await produceEvents(producer, env, sim.events.slice(0, half).filter((e) => !late(e)), 0.05);
    await consumer.start(ac.signal);
    try {
      await produceEvents(producer, env, sim.events.slice(0, half).filter(late), 0.05);
      await produceEvents(producer, env, sim.events.slice(half), 0.05);
      await waitCaughtUp(admin, pool, env.schemas, env.group, env.topics, { timeoutMs: 90_000 });
      await consumer.redisSink.flush();
    } finally {
      ac.abort();
      await consumer.stop();
    }
    await stagingMatchesSim(env, sim);
    const client = await pool.connect();
    try {
      for (const d of await diffDerivedTables(client, env.schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
    const clvRows = Number((await pool.query(`SELECT count(*) n FROM "${env.schemas.analytics}".customer_lifetime_value`)).rows[0].n);
    expect(clvRows).toBeGreaterThan(5);
    expect(await diffRedisClv(pool, redis, env.schemas, env.redisPrefix)).toEqual({ missing: [], stale: [], extra: [] });
    const outbox = await pool.query(`SELECT count(*) n FROM "${env.schemas.meta}".redis_outbox`);
    expect(outbox.rows[0].n).toBe('0');

    // A replay from offset 0 (new group, fresh schemas) rebuilds the same tables.
    const replay: Env = { ...env, group: `${env.id}_replay`, redisPrefix: `${env.id}_r:`, schemas: { staging: `${env.id}_rs`, analytics: `${env.id}_ra`, meta: `${env.id}_rm` } };
    envs.push(replay);
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(replay.schemas) });
    const again = startConsumer(replay);
    const ac2 = new AbortController();
    await again.start(ac2.signal);
    try {
      await waitCaughtUp(admin, pool, replay.schemas, replay.group, replay.topics, { timeoutMs: 90_000 });
    } finally {
      ac2.abort();
      await again.stop();
    }
    const tables: Array<[keyof WarehouseSchemas, string]> = [
      ...TABLE_NAMES.map((t) => ['staging', `stg_${t}`] as [keyof WarehouseSchemas, string]),
      ['staging', 'customer_changes'], ['staging', 'order_status_changes'],
      ...['dim_date', 'dim_products', 'dim_customers', 'fact_orders', 'customer_lifetime_value', 'mart_sales', 'order_fulfillment'].map((t) => ['analytics', t] as [keyof WarehouseSchemas, string]),
    ];
    for (const [schema, table] of tables) {
      const { rows: cols } = await pool.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2
        AND column_name NOT IN ('_ingested_at', 'version') ORDER BY ordinal_position`, [env.schemas[schema], table]);
      expect(cols.length, table).toBeGreaterThan(2);
      const list = cols.map((c) => `"${c.column_name}"`).join(', ');
      const a = `SELECT ${list} FROM "${env.schemas[schema]}"."${table}"`;
      const b = `SELECT ${list} FROM "${replay.schemas[schema]}"."${table}"`;
      const { rows } = await pool.query(`SELECT (SELECT count(*) FROM (${a} EXCEPT ALL ${b}) x) AS only_live, (SELECT count(*) FROM (${b} EXCEPT ALL ${a}) y) AS only_replay`);
      expect(rows[0], `${table} after replay`).toEqual({ only_live: '0', only_replay: '0' });
    }
  });

  it('resumes from the Postgres offsets even when the Kafka group offsets were moved past them', async () => {
    const env = await makeEnv('cons_seek', 2);
    const sim = new ShopSim(31337);
    sim.randomWorkload(60);
    const half = Math.floor(sim.events.length / 2);
    await produceEvents(producer, env, sim.events.slice(0, half));
    const run = async () => {
      const consumer = startConsumer(env);
      const ac = new AbortController();
      await consumer.start(ac.signal);
      try {
        await waitCaughtUp(admin, pool, env.schemas, env.group, env.topics, { timeoutMs: 60_000 });
      } finally {
        ac.abort();
        await consumer.stop();
      }
    };
    await run();
    await produceEvents(producer, env, sim.events.slice(half));
    // An operator "skips" the backlog in Kafka: the data committed in Postgres says otherwise.
    for (const topic of env.topics) {
      const ends = await admin.fetchTopicOffsets(topic);
      await admin.setOffsets({ groupId: env.group, topic, partitions: ends.map((p) => ({ partition: p.partition, offset: p.high })) });
    }
    await run();
    await stagingMatchesSim(env, sim);
  });

  it('keeps consuming while Redis is unreachable; the outbox repairs Redis when it is back; older versions never overwrite newer', async () => {
    const env = await makeEnv('cons_redis', 1);
    const sim = new ShopSim(5150);
    sim.randomWorkload(80);
    await produceEvents(producer, env, sim.events);
    // Nothing listens on port 1: every Redis command fails at once.
    const deadRedis = new Redis('redis://127.0.0.1:1', { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => 1000 });
    deadRedis.on('error', () => {});
    const consumer = new WarehouseConsumer({
      kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis: deadRedis, schemas: env.schemas, group: env.group,
      topics: env.topics, redisKeyPrefix: env.redisPrefix, log: createLogger('test-consumer', 'error'), maxMessagesPerTx: 20,
    });
    const ac = new AbortController();
    await consumer.start(ac.signal);
    try {
      await waitCaughtUp(admin, pool, env.schemas, env.group, env.topics, { timeoutMs: 60_000 });
    } finally {
      ac.abort();
      await consumer.stop();
      deadRedis.disconnect();
    }
    const pending = Number((await pool.query(`SELECT count(*) n FROM "${env.schemas.meta}".redis_outbox`)).rows[0].n);
    expect(pending).toBeGreaterThan(0);
    expect((await diffRedisClv(pool, redis, env.schemas, env.redisPrefix)).missing.length).toBeGreaterThan(0);

    const sink = new ClvRedisSink(redis, pool, env.schemas, env.redisPrefix, log);
    expect(await sink.flush()).toBe(0);
    expect(await diffRedisClv(pool, redis, env.schemas, env.redisPrefix)).toEqual({ missing: [], stale: [], extra: [] });

    // The version guard of clv-write.lua, directly.
    const k = clvKey(env.redisPrefix, '999999');
    const dk = clvDeletedKey(env.redisPrefix, '999999');
    const write = (v: string, mode: string, ...kv: string[]) => redis.eval(CLV_SCRIPT, 2, k, dk, v, mode, ...kv);
    expect(await write('5', 'set', 'total_revenue', '10.00')).toBe(1);
    expect(await write('3', 'set', 'total_revenue', '99.99')).toBe(0);
    expect(await redis.hgetall(k)).toEqual({ version: '5', total_revenue: '10.00' });
    expect(await write('6', 'del')).toBe(1);
    expect(await write('4', 'set', 'total_revenue', '1.00')).toBe(0);
    expect(await redis.exists(k)).toBe(0);
    expect(await write('7', 'set', 'total_revenue', '12.34')).toBe(1);
    expect(await redis.hgetall(k)).toEqual({ version: '7', total_revenue: '12.34' });
    await redis.del(k, dk);
  });

  it('survives SIGKILLs of the consumer process at random points: tables equal the batch recomputation, Redis equals Postgres', async () => {
    const env = await makeEnv('cons_kill', 2);
    const sim = new ShopSim(99);
    sim.randomWorkload(360);
    const main = fileURLToPath(new URL('../../consumers/warehouse/main.ts', import.meta.url));
    const childEnv = {
      ...process.env,
      WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, KAFKA_BROKERS: stackEnv.kafkaBrokers.join(','),
      SCHEMA_REGISTRY_URL: stackEnv.registryUrl, REDIS_URL: stackEnv.redisUrl, TOPIC_PREFIX: env.prefix,
      CONSUMER_GROUP: env.group, STAGING_SCHEMA: env.schemas.staging, ANALYTICS_SCHEMA: env.schemas.analytics,
      META_SCHEMA: env.schemas.meta, REDIS_KEY_PREFIX: env.redisPrefix, LOG_LEVEL: 'warn', CONSUMER_HEALTH_PORT: '0',
      // Small transactions and a short session so kills land mid-stream and the group recovers fast.
      CONSUMER_MAX_MESSAGES_PER_TX: '15', CONSUMER_SESSION_TIMEOUT_MS: '6000',
    };
    const spawnConsumer = (): ChildProcess => {
      const child = spawn(process.execPath, ['--import', 'tsx', main], { env: childEnv, stdio: ['ignore', 'ignore', 'inherit'] });
      return child;
    };
    const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));
    const chunks = 6;
    const size = Math.ceil(sim.events.length / chunks);
    let kills = 0;
    const lagAtKill: number[] = [];
    for (let i = 0; i < chunks; i++) {
      await produceEvents(producer, env, sim.events.slice(i * size, (i + 1) * size), 0.03);
      const child = spawnConsumer();
      // Kill once the consumer has made some progress in this round, at a random moment after.
      const before = await appliedOffsets(env);
      const until = Date.now() + 45_000;
      while ((await appliedOffsets(env)) <= before && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      // Short: a chunk drains in a few hundred ms, and the kill should land while it does.
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 120)));
      child.kill('SIGKILL');
      await exited(child);
      kills++;
      lagAtKill.push(await groupLag(admin, pool, env.schemas, env.group, env.topics));
    }
    const final = spawnConsumer();
    try {
      await waitCaughtUp(admin, pool, env.schemas, env.group, env.topics, { timeoutMs: 90_000 });
      const until = Date.now() + 20_000;
      while (Number((await pool.query(`SELECT count(*) n FROM "${env.schemas.meta}".redis_outbox`)).rows[0].n) > 0 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      final.kill('SIGTERM');
      await exited(final);
    }
    expect(kills).toBe(chunks);
    // At least some kills must have hit a consumer with work still pending.
    expect(lagAtKill.filter((lag) => lag > 0).length, `lag at each kill: ${lagAtKill.join(',')}`).toBeGreaterThan(chunks / 2);
    await stagingMatchesSim(env, sim);
    const client = await pool.connect();
    try {
      for (const d of await diffDerivedTables(client, env.schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
    expect(await diffRedisClv(pool, redis, env.schemas, env.redisPrefix)).toEqual({ missing: [], stale: [], extra: [] });
  }, 400_000);
});

async function appliedOffsets(env: Env): Promise<number> {
  const { rows } = await pool.query(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM "${env.schemas.meta}".consumer_offsets WHERE consumer_group = $1`, [env.group]);
  return Number(rows[0].n);
}
