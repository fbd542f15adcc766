import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool } from '../../src/sinks/postgres/pool.ts';
import { stagingRows } from '../../consumers/warehouse/staging-apply.ts';
import { registerTable, ShopSim } from '../helpers/debezium-fixtures.ts';
import { jsonEnvelope, jsonKey } from '../helpers/debezium-json-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The warehouse consumer on topics that mix Confluent-wire Avro with
 * Debezium's JsonConverter output (schemas on and off, decimals as base64
 * and as strings), detected per message: staging equals the simulated
 * source, the derived tables equal the batch recomputation, and a malformed
 * JSON message goes to the dead-letter topic with its original bytes and
 * provenance headers exactly as the malformed Avro message beside it does.
 */
describe('warehouse consumer on Debezium JSON', () => {
  const id = uniqueId('cons_json');
  const schemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  const topics = TABLE_NAMES.map((t) => `${id}.public.${t}`);
  const kafka = new kafkajs.Kafka({ clientId: id, brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const pool = createWarehousePool(stackEnv.warehouseUrl, 4);
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });

  afterAll(async () => {
    const existing = new Set(await admin.listTopics());
    const mine = [...topics, ...topics.map((t) => `${t}.dlq`)].filter((t) => existing.has(t));
    if (mine.length) await admin.deleteTopics({ topics: mine }).catch(() => {});
    await pool.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    const keys = await redis.keys(`${id}:*`);
    if (keys.length) await redis.del(...keys);
    await Promise.all([admin.disconnect(), producer.disconnect()]);
    await pool.end();
    redis.disconnect();
  });

  it('applies Avro and JSON (schemas on/off) alike and dead-letters malformed JSON as it does malformed Avro', async () => {
    await Promise.all([admin.connect(), producer.connect()]);
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 1 })), waitForLeaders: true });
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
    const registry = createRegistry(stackEnv.registryUrl);
    const encoders = new Map(await Promise.all(TABLE_NAMES.map(async (t) => [t, await registerTable(registry, id, t)] as const)));

    const sim = new ShopSim(7);
    sim.randomWorkload(60);
    const malformed = Buffer.from('{"schema":{"type":"struct"},"payload":{"op":"c","after":{"customer_id":1');
    let badAvro: Buffer = Buffer.alloc(0);
    let badOffsets: number[] = [];
    const byTopic = new Map<string, Array<{ key: Buffer | null; value: Buffer | null; headers?: Record<string, string> }>>();
    sim.events.forEach((ev, i) => {
      const row = (ev.after ?? ev.before)!;
      const topic = `${id}.public.${ev.table}`;
      // Rotate formats per event so one partition holds all four.
      const f = i % 4;
      const o = { schemas: f === 1, decimal: f === 3 ? 'string' as const : 'precise' as const, prefix: id };
      const msg = f === 0
        ? { key: encoders.get(ev.table)!.encodeKey(row), value: encoders.get(ev.table)!.encodeValue(ev) }
        : { key: jsonKey(ev.table, row, o), value: jsonEnvelope(ev, o) };
      const list = byTopic.get(topic) ?? [];
      list.push(msg);
      if (i === 5) {
        // The malformed JSON, then a malformed Avro message (valid magic byte and schema id, truncated body) beside it.
        badOffsets = [list.length, list.length + 1];
        badAvro = encoders.get(ev.table)!.encodeValue(ev).subarray(0, 7);
        list.push({ key: Buffer.from('{"customer_id":1}'), value: malformed, headers: { origin: 'json' } });
        list.push({ key: Buffer.from('{"customer_id":1}'), value: badAvro, headers: { origin: 'avro' } });
      }
      byTopic.set(topic, list);
    });
    const sourceTopic = `${id}.public.${sim.events[5]!.table}`;
    const dlqTopic = `${sourceTopic}.dlq`;
    await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });

    const consumer = new WarehouseConsumer({
      kafka, registry, pool, redis, schemas, group: id, topics, redisKeyPrefix: `${id}:`, log: createLogger('cons-json', 'warn'), maxMessagesPerTx: 40,
    });
    const ac = new AbortController();
    await consumer.start(ac.signal);
    try {
      await waitCaughtUp(admin, pool, schemas, id, topics, { timeoutMs: 60_000 });
    } finally {
      ac.abort();
      await consumer.stop();
    }

    const client = await pool.connect();
    try {
      for (const t of TABLE_NAMES) {
        const got = (await stagingRows(client, schemas, t)).map((r) => JSON.stringify(Object.keys(TABLES[t].columns).map((c) => r[c] ?? null))).sort();
        const want = [...sim.rows[t].values()].map((r) => JSON.stringify(Object.keys(TABLES[t].columns).map((c) => (r[c] === null || r[c] === undefined ? null : String(r[c]))))).sort();
        expect(got, `stg_${t}`).toEqual(want);
      }
      for (const d of await diffDerivedTables(client, schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
    // Both bad messages are dead letters the same way: a row each, and the DLQ record with the original bytes and provenance.
    const dead = await pool.query(`SELECT topic, "offset"::int, dlq_topic, error FROM "${schemas.meta}".dead_letters ORDER BY "offset"`);
    expect(dead.rows.map((r) => [r.topic, r.offset, r.dlq_topic])).toEqual(badOffsets.map((o) => [sourceTopic, o, dlqTopic]));
    expect(dead.rows[0].error).toMatch(/^DECODE_FAILED: malformed JSON/);
    expect(dead.rows[1].error).toMatch(/^DECODE_FAILED/);

    const reader = kafka.consumer({ groupId: `${id}-dlq` });
    await reader.connect();
    await reader.subscribe({ topic: dlqTopic, fromBeginning: true });
    const got: Array<{ value: Buffer; headers: Record<string, string> }> = [];
    await reader.run({ eachMessage: async ({ message }) => {
      if (message.value) got.push({ value: message.value, headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])) });
    } });
    const until = Date.now() + 30_000;
    while (got.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    await reader.disconnect();
    expect(got.map((g) => g.value)).toEqual([malformed, badAvro]);
    for (const [i, origin] of ['json', 'avro'].entries()) {
      expect(got[i]!.headers, origin).toMatchObject({ origin, 'dlq.source.topic': sourceTopic, 'dlq.source.partition': '0', 'dlq.source.offset': String(badOffsets[i]) });
      expect(got[i]!.headers['dlq.error'], origin).toBe(dead.rows[i].error);
    }
    expect(Object.keys(got[0]!.headers).sort()).toEqual(Object.keys(got[1]!.headers).sort());
  });
});
