import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../src/consumer/warehouse-consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/** A consumer started before the capture created its topics waits, then creates what is still missing. */
describe('warehouse consumer topics', () => {
  const id = uniqueId('cons_topics');
  const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  const topics = TABLE_NAMES.map((t) => `${id}.public.${t}`);
  const kafka = new kafkajs.Kafka({ clientId: id, brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  const pool = createWarehousePool(stackEnv.warehouseUrl);
  const redis = new Redis(stackEnv.redisUrl, { lazyConnect: true });

  afterAll(async () => {
    await admin.deleteTopics({ topics }).catch(() => {});
    await admin.disconnect();
    await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    await pool.end();
    redis.disconnect();
  });

  it('waits for missing topics, then creates them after the grace period', async () => {
    await admin.connect();
    await migrate(pool, 'warehouse', { schemas: { staging_schema: schemas.staging, analytics_schema: schemas.analytics, meta_schema: schemas.meta } });
    // One topic exists already, as if the capture had seen only customers so far.
    await admin.createTopics({ topics: [{ topic: topics[0]!, numPartitions: 3 }], waitForLeaders: true });
    const consumer = new WarehouseConsumer({
      kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis, schemas, group: id, topics,
      redisKeyPrefix: `${id}:`, log: createLogger('test', 'error'), topicWaitMs: 1500,
    });
    const ac = new AbortController();
    const t0 = Date.now();
    try {
      await consumer.start(ac.signal);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      const existing = new Set(await admin.listTopics());
      expect(topics.filter((t) => !existing.has(t))).toEqual([]);
      const meta = await admin.fetchTopicMetadata({ topics: [topics[0]!] });
      expect(meta.topics[0]!.partitions).toHaveLength(3); // an existing topic is left as it is
    } finally {
      ac.abort();
      await consumer.stop();
    }
  });
});
