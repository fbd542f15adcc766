import { Redis } from 'ioredis';
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { registerTable, type FixtureEvent } from './debezium-fixtures.ts';
import { stackEnv, uniqueId } from './stack-env.ts';

/**
 * A warehouse namespace of its own fed by Debezium-Avro fixture events:
 * topics `<id>.public.<table>`, their registry subjects, migrated schemas
 * `<id>_stg` / `<id>_an` / `<id>_meta`. The id is also the group and the
 * Redis key prefix the tests use.
 */
export interface FixtureEnv {
  id: string;
  schemas: WarehouseSchemas;
  topics: string[];
  encoders: Map<TableName, Awaited<ReturnType<typeof registerTable>>>;
}

export async function makeFixtureEnv(admin: Admin, pool: pg.Pool, name: string, numPartitions: number): Promise<FixtureEnv> {
  const id = uniqueId(name).slice(0, 24);
  const env: FixtureEnv = { id, schemas: { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` }, topics: TABLE_NAMES.map((t) => `${id}.public.${t}`), encoders: new Map() };
  await admin.createTopics({ topics: env.topics.map((topic) => ({ topic, numPartitions })), waitForLeaders: true });
  const registry = createRegistry(stackEnv.registryUrl);
  for (const t of TABLE_NAMES) env.encoders.set(t, await registerTable(registry, id, t));
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(env.schemas) });
  return env;
}

/** Sends the events to their tables' topics, keyed like Debezium, in one batch. */
export async function produceFixtures(producer: Producer, env: FixtureEnv, events: FixtureEvent[]): Promise<void> {
  const byTopic = new Map<string, Array<{ key: Buffer; value: Buffer }>>();
  for (const ev of events) {
    const enc = env.encoders.get(ev.table)!;
    const list = byTopic.get(enc.topic) ?? [];
    list.push({ key: enc.encodeKey((ev.after ?? ev.before)!), value: enc.encodeValue(ev) });
    byTopic.set(enc.topic, list);
  }
  await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
}

/**
 * The clients and fixture namespace of a warehouse-consumer test file, set
 * up in its beforeAll and removed in its afterAll (topics, the three
 * schemas, the Redis keys of its prefix). Read the fields inside tests.
 */
export interface FixtureStack {
  kafka: Kafka;
  admin: Admin;
  producer: Producer;
  pool: pg.Pool;
  redis: Redis;
  env: FixtureEnv;
}

export function useFixtureStack(clientId: string, name: string, numPartitions: number): FixtureStack {
  const s = {} as FixtureStack;
  beforeAll(async () => {
    s.kafka = new kafkajs.Kafka({ clientId, brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    s.admin = s.kafka.admin();
    s.producer = s.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await Promise.all([s.admin.connect(), s.producer.connect()]);
    s.pool = createWarehousePool(stackEnv.warehouseUrl, 6);
    s.redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
    s.env = await makeFixtureEnv(s.admin, s.pool, name, numPartitions);
  });
  afterAll(async () => {
    const { env } = s;
    await s.admin.deleteTopics({ topics: env.topics }).catch(() => {});
    await s.pool.query(`DROP SCHEMA IF EXISTS "${env.schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${env.schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${env.schemas.meta}" CASCADE`);
    const keys = await s.redis.keys(`${env.id}:*`);
    if (keys.length) await s.redis.del(...keys);
    await Promise.all([s.admin.disconnect(), s.producer.disconnect()]);
    await s.pool.end();
    s.redis.disconnect();
  });
  return s;
}
