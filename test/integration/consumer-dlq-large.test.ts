import { randomBytes } from 'node:crypto';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../src/consumer/dead-letters.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { registerTable, ShopSim } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Issue 10, "dead letters never crash": one partition's batch of bad
 * messages is larger than the dead-letter topic accepts in one produce
 * (300 records of ~4 KB of garbage, ~1.2 MB against the broker's 1 MiB
 * max.message.bytes), and one record alone is larger than that limit. The
 * consumer used to fail the DLQ send (KafkaJSNonRetriableError) and then sit
 * idle. Now the batch goes out in chunks, the big record is kept in
 * `<meta>.dead_letters` with a note in the DLQ topic, and the consumer goes
 * on to apply the valid messages after them.
 */
describe('dead letters larger than the broker limit', () => {
  const id = uniqueId('dlq_large');
  const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  const topics = TABLE_NAMES.map((t) => `${id}.public.${t}`);
  const customers = topics[0]!;
  const dlqTopic = `${customers}.dlq`;
  const kafka = new kafkajs.Kafka({ clientId: id, brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
  const pool = createWarehousePool(stackEnv.warehouseUrl);
  const redis = new Redis(stackEnv.redisUrl, { lazyConnect: true });

  afterAll(async () => {
    await admin.deleteTopics({ topics: [...topics, dlqTopic] }).catch(() => {});
    await producer.disconnect();
    await admin.disconnect();
    await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    await pool.end();
    const keys = await redis.keys(`${id}:*`).catch(() => []);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('writes the DLQ batch in chunks, keeps the oversized record in dead_letters and applies what follows', async () => {
    await Promise.all([admin.connect(), producer.connect()]);
    // Source topics as the capture creates them (4 MiB records allowed); the DLQ topic gets the broker default.
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: String(4 << 20) }] })), waitForLeaders: true });
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
    const registry = createRegistry(stackEnv.registryUrl);
    const enc = await registerTable(registry, id, 'customers');

    // Garbage that is not Confluent wire format (first byte not 0): DECODE_FAILED, dead-lettered.
    const garbage = (n: number, size: number) => ({ key: Buffer.from(`bad-${n}`), value: Buffer.concat([Buffer.from([0x7f]), randomBytes(size - 1)]) });
    const bad = Array.from({ length: 300 }, (_, i) => garbage(i, 4096));
    for (let i = 0; i < bad.length; i += 100) await producer.send({ topic: customers, acks: -1, messages: bad.slice(i, i + 100) });
    const huge = garbage(300, 1_200_000);
    await producer.send({ topic: customers, acks: -1, messages: [huge] });
    const sim = new ShopSim(77);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) sim.transaction(() => { ids.push(sim.insertCustomer()); });
    await producer.send({ topic: customers, acks: -1, messages: sim.events.map((ev) => ({ key: enc.encodeKey(ev.after!), value: enc.encodeValue(ev) })) });

    let fatal: Error | undefined;
    const consumer = new WarehouseConsumer({
      kafka, registry, pool, redis, schemas, group: id, topics, redisKeyPrefix: `${id}:`, log: createLogger('test', 'silent'),
      // The whole bad run in one fetch and one slice, so one DLQ write carries all 300 (+ the big one).
      maxBytesPerPartition: 8 << 20, maxBytesPerTx: 8 << 20,
      onFatal: (e) => { fatal = e; },
    });
    const ac = new AbortController();
    await consumer.start(ac.signal);
    try {
      await waitCaughtUp(admin, pool, schemas, id, topics, { timeoutMs: 90_000 });
    } finally {
      ac.abort();
      await consumer.stop();
    }
    expect(fatal).toBeUndefined();

    // The DLQ topic's limit is the broker default: the 300 records (~1.2 MB) could not have gone in one produce.
    const cfg = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: dlqTopic, configNames: ['max.message.bytes'] }] });
    const limit = Number(cfg.resources[0]!.configEntries[0]!.configValue);
    expect(limit).toBe(DEFAULT_MAX_MESSAGE_BYTES);
    expect(bad.reduce((n, m) => n + m.value.length, 0)).toBeGreaterThan(limit);

    // Every bad record is in the DLQ topic (300 records and one note), in source order.
    const dlqOffsets = await admin.fetchTopicOffsets(dlqTopic);
    expect(dlqOffsets.reduce((n, p) => n + Number(p.high), 0)).toBe(301);
    const seen: Array<{ offset: string; bytes: number; keptIn?: string }> = [];
    const reader = kafka.consumer({ groupId: `${id}_reader` });
    await reader.connect();
    await reader.subscribe({ topics: [dlqTopic], fromBeginning: true });
    await new Promise<void>((resolve) => {
      void reader.run({ eachMessage: async ({ message }) => {
        seen.push({ offset: String(message.headers!['dlq.source.offset']), bytes: message.value?.length ?? 0, keptIn: message.headers!['dlq.kept-in']?.toString() });
        if (seen.length === 301) resolve();
      } });
    });
    await reader.disconnect();
    await admin.deleteGroups([`${id}_reader`]).catch(() => {});
    expect(seen.map((s) => Number(s.offset))).toEqual(Array.from({ length: 301 }, (_, i) => i));
    expect(seen.slice(0, 300).every((s) => s.bytes === 4096)).toBe(true);
    expect(seen[300]!.keptIn).toBe(`${schemas.meta}.dead_letters`);
    expect(seen[300]!.bytes).toBeLessThan(1024);

    // Postgres has a note for each, and the big record's bytes.
    const dead = await pool.query(`SELECT "offset"::int AS o, kept_in_table, length(message_value) AS len, message_key FROM "${schemas.meta}".dead_letters WHERE consumer_group = $1 ORDER BY 1`, [id]);
    expect(dead.rows).toHaveLength(301);
    expect(dead.rows.filter((r) => r.kept_in_table)).toEqual([{ o: 300, kept_in_table: true, len: 1_200_000, message_key: Buffer.from('bad-300') }]);
    const kept = await pool.query(`SELECT message_value FROM "${schemas.meta}".dead_letters WHERE consumer_group = $1 AND kept_in_table`, [id]);
    expect(Buffer.compare(kept.rows[0].message_value, huge.value)).toBe(0);

    // The valid messages after them were applied.
    const stg = await pool.query(`SELECT customer_id::text AS id FROM "${schemas.staging}".stg_customers ORDER BY customer_id`);
    expect(stg.rows.map((r) => r.id)).toEqual([...ids].sort((a, b) => Number(a) - Number(b)));
  }, 150_000);
});
