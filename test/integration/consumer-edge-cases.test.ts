import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { avroType, envelopeSchema, envelopeValue, registerTable, ShopSim, wire } from '../helpers/debezium-fixtures.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Edge cases of the warehouse consumer on the real stack: topics that do
 * not exist yet, and a message Postgres refuses although it validated.
 */
describe('warehouse consumer edge cases', () => {
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
    await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
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

  it('dead-letters a message Postgres refuses (numeric overflow) and applies the rest of the batch', async () => {
    const pid = uniqueId('cons_poison');
    const ps: WarehouseSchemas = { staging: `${pid}_stg`, analytics: `${pid}_an`, meta: `${pid}_meta` };
    const ptopics = TABLE_NAMES.map((t) => `${pid}.public.${t}`);
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
    await Promise.all([admin.connect(), producer.connect()]);
    try {
      await admin.createTopics({ topics: ptopics.map((topic) => ({ topic })), waitForLeaders: true });
      await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(ps) });
      // Price as Debezium's VariableScaleDecimal (numeric without a declared scale).
      const schema = envelopeSchema(pid, 'products') as { fields: Array<{ name: string; type: unknown }> };
      const value = (schema.fields[0]!.type as [string, { fields: Array<{ name: string; type: unknown }> }])[1];
      value.fields.find((f) => f.name === 'price')!.type = ['null', {
        type: 'record', name: 'VariableScaleDecimal', namespace: 'io.debezium.data',
        fields: [{ name: 'scale', type: 'int' }, { name: 'value', type: 'bytes' }], 'connect.name': 'io.debezium.data.VariableScaleDecimal',
      }];
      const registry = createRegistry(stackEnv.registryUrl);
      const { id: schemaId } = await registry.register({ type: 'AVRO' as never, schema: JSON.stringify(schema) }, { subject: `${ptopics[1]}-value` });
      const type = avroType(schema);
      const event = (n: number, scale: number) => {
        const v = envelopeValue({ table: 'products', op: 'c', lsn: BigInt(100 + n), commitTime: '2024-01-01T00:00:00.000000Z',
          after: { product_id: n, product_name: `p${n}`, category: 'books', price: null, rating: null, updated_at: '2024-01-01T00:00:00Z' } });
        (v.after as Record<string, unknown>).price = { scale, value: Buffer.from([0x01]) };
        return { key: String(n), value: wire(schemaId, type, v) };
      };
      // 10^-20000 has more fraction digits than numeric can hold.
      await producer.send({ topic: ptopics[1]!, acks: -1, messages: [event(1, 2), event(2, 20_000), event(3, 2)] });
      const consumer = new WarehouseConsumer({
        kafka, registry, pool, redis, schemas: ps, group: pid, topics: ptopics, redisKeyPrefix: `${pid}:`, log: createLogger('test', 'silent'),
      });
      const ac = new AbortController();
      await consumer.start(ac.signal);
      try {
        await waitCaughtUp(admin, pool, ps, pid, ptopics, { timeoutMs: 60_000 });
      } finally {
        ac.abort();
        await consumer.stop();
      }
      const { rows } = await pool.query(`SELECT product_id::int, price::text FROM "${ps.staging}".stg_products ORDER BY 1`);
      expect(rows).toEqual([{ product_id: 1, price: '0.01' }, { product_id: 3, price: '0.01' }]);
      const dead = await pool.query(`SELECT "offset"::int, error FROM "${ps.meta}".dead_letters`);
      expect(dead.rows).toHaveLength(1);
      expect(dead.rows[0]).toMatchObject({ offset: 1 });
      expect(dead.rows[0].error).toMatch(/rejected by the warehouse.*overflow/);
      const dlq = await admin.fetchTopicOffsets(`${ptopics[1]}.dlq`);
      expect(dlq.reduce((n, p) => n + Number(p.high), 0)).toBe(1);
    } finally {
      await admin.deleteTopics({ topics: [...ptopics, `${ptopics[1]}.dlq`] }).catch(() => {});
      await producer.disconnect();
      await pool.query(`DROP SCHEMA IF EXISTS "${ps.staging}" CASCADE; DROP SCHEMA IF EXISTS "${ps.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${ps.meta}" CASCADE`);
    }
  });

  it('two members of one group, joining and leaving mid-stream (rebalances), end equal to the batch recomputation', async () => {
    const gid = uniqueId('cons_rebal');
    const gs: WarehouseSchemas = { staging: `${gid}_stg`, analytics: `${gid}_an`, meta: `${gid}_meta` };
    const gtopics = TABLE_NAMES.map((t) => `${gid}.public.${t}`);
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
    await Promise.all([admin.connect(), producer.connect()]);
    const members: Array<{ c: WarehouseConsumer; ac: AbortController }> = [];
    const join = async () => {
      const c = new WarehouseConsumer({
        kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis, schemas: gs, group: gid, topics: gtopics,
        redisKeyPrefix: `${gid}:`, log: createLogger('test', 'silent'), maxMessagesPerTx: 10, sessionTimeoutMs: 6000,
      });
      const ac = new AbortController();
      await c.start(ac.signal);
      members.push({ c, ac });
    };
    try {
      await admin.createTopics({ topics: gtopics.map((topic) => ({ topic, numPartitions: 3 })), waitForLeaders: true });
      await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(gs) });
      const registry = createRegistry(stackEnv.registryUrl);
      const enc = new Map<string, Awaited<ReturnType<typeof registerTable>>>();
      for (const t of TABLE_NAMES) enc.set(t, await registerTable(registry, gid, t));
      const sim = new ShopSim(2718);
      sim.randomWorkload(240);
      const send = async (events: typeof sim.events) => {
        const byTopic = new Map<string, Array<{ key: Buffer; value: Buffer }>>();
        for (const ev of events) {
          const e = enc.get(ev.table)!;
          byTopic.set(e.topic, [...(byTopic.get(e.topic) ?? []), { key: e.encodeKey((ev.after ?? ev.before)!), value: e.encodeValue(ev) }]);
        }
        await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      };
      const third = Math.ceil(sim.events.length / 3);
      await send(sim.events.slice(0, third));
      await join();
      await send(sim.events.slice(third, 2 * third));
      await join(); // rebalance: partitions move to the second member mid-stream
      await send(sim.events.slice(2 * third));
      await new Promise((r) => setTimeout(r, 300));
      members[0]!.ac.abort();
      await members[0]!.c.stop(); // rebalance again: everything to the second member
      await waitCaughtUp(admin, pool, gs, gid, gtopics, { timeoutMs: 90_000 });
      const client = await pool.connect();
      try {
        const stg = await client.query(`SELECT count(*) n FROM "${gs.staging}".stg_order_items`);
        expect(Number(stg.rows[0].n)).toBe(sim.rows.order_items.size);
        for (const d of await diffDerivedTables(client, gs)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
      } finally {
        client.release();
      }
    } finally {
      for (const m of members) {
        m.ac.abort();
        await m.c.stop();
      }
      await admin.deleteTopics({ topics: gtopics }).catch(() => {});
      await producer.disconnect();
      await pool.query(`DROP SCHEMA IF EXISTS "${gs.staging}" CASCADE; DROP SCHEMA IF EXISTS "${gs.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${gs.meta}" CASCADE`);
      const keys = await redis.keys(`${gid}:*`);
      if (keys.length) await redis.del(...keys);
    }
  }, 200_000);
});
