import { Writable } from 'node:stream';
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { findRetentionGaps, type RetentionGapPolicy } from '../../src/consumer/stored-offsets.ts';
import { loadWatchdogConfig } from '../../src/health/config.ts';
import { consumerHealth } from '../../src/health/process-health.ts';
import { collectStatus } from '../../src/health/status-collect.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { readStoredOffsets } from '../../src/sinks/postgres/batch-tx.ts';
import { createWarehousePool } from '../../src/sinks/postgres/pool.ts';
import { ShopSim, type FixtureEvent } from '../helpers/debezium-fixtures.ts';
import { makeFixtureEnv, produceFixtures, type FixtureEnv } from '../helpers/fixture-env.ts';
import { stackEnv } from '../helpers/stack-env.ts';

/**
 * A stored offset behind the log start (the changes were deleted from Kafka
 * before the group applied them, as retention does): the consumer must not
 * pass over them by default, must name the partition and the offsets lost,
 * and must keep serving the other partitions.
 */
let kafka: Kafka;
let admin: Admin;
let producer: Producer;
let pool: pg.Pool;
let redis: Redis;
const ids: Array<{ id: string; topics: string[] }> = [];

type Env = FixtureEnv;

async function makeEnv(name: string): Promise<Env> {
  const env = await makeFixtureEnv(admin, pool, name, 1);
  ids.push({ id: env.id, topics: env.topics });
  return env;
}

const produce = (env: Env, events: FixtureEvent[]) => produceFixtures(producer, env, events);

function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  return { log: pino({ level: 'info' }, stream), lines };
}

async function startConsumer(env: Env, policy?: RetentionGapPolicy) {
  const { log, lines } = capturingLogger();
  const consumer = new WarehouseConsumer({
    kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis, schemas: env.schemas, group: env.id,
    topics: env.topics, redisKeyPrefix: `${env.id}:`, log, maxMessagesPerTx: 50, redisRetryMs: 200, onRetentionGap: policy,
  });
  const ac = new AbortController();
  await consumer.start(ac.signal);
  return { consumer, lines, stop: async () => { ac.abort(); await consumer.stop(); } };
}

async function until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  kafka = new kafkajs.Kafka({ clientId: 'test-retention-gap', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await Promise.all([admin.connect(), producer.connect()]);
  pool = createWarehousePool(stackEnv.warehouseUrl, 6);
  redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  for (const { id, topics } of ids) {
    await admin.deleteTopics({ topics: [...topics, ...topics.map((t) => `${t}.dlq`)] }).catch(() => {});
    const { rows } = await pool.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, [`${id}\\_%`]);
    for (const r of rows) await pool.query(`DROP SCHEMA IF EXISTS "${r.nspname}" CASCADE`);
    const keys = await redis.keys(`${id}:*`);
    if (keys.length) await redis.del(...keys);
  }
  await Promise.all([admin.disconnect(), producer.disconnect()]);
  await pool.end();
  redis.disconnect();
});

describe('an offset that holds no message is not a gap', () => {
  it('a stored offset on a transaction marker (transactional producer) is not a gap: applied on, nothing reported or warned', async () => {
    const env = await makeEnv('rgtx');
    const productsTopic = `${env.id}.public.products`;
    const tx = kafka.producer({ transactionalId: `${env.id}-tx`, idempotent: true, maxInFlightRequests: 1 });
    await tx.connect();
    try {
      const sendTx = async (events: FixtureEvent[]) => {
        const enc = env.encoders.get('products')!;
        const t = await tx.transaction();
        await t.send({ topic: productsTopic, acks: -1, messages: events.map((ev) => ({ key: enc.encodeKey((ev.after ?? ev.before)!), value: enc.encodeValue(ev) })) });
        await t.commit();
      };
      const sim = new ShopSim(7);
      sim.randomWorkload(40);
      const products = sim.events.filter((e) => e.table === 'products');
      const half = Math.floor(products.length / 2);
      expect(half).toBeGreaterThan(3);
      await sendTx(products.slice(0, half));
      let c = await startConsumer(env);
      await until('the first transaction applied', async () => (await pool.query(`SELECT count(*)::int n FROM "${env.schemas.staging}".stg_products`)).rows[0].n > 0);
      // (groupLag counts the commit marker as a message, so wait for the offset instead)
      await until('the first transaction stored', async () => (await readStoredOffsets(pool, env.schemas, env.id)).get(`${productsTopic}/0`) === String(half));
      await c.stop();
      // The stored offset is the commit marker's (last message + 1); the next message is one past it.
      const stored = (await readStoredOffsets(pool, env.schemas, env.id)).get(`${productsTopic}/0`)!;
      expect(BigInt(stored)).toBe(BigInt(half));
      await sendTx(products.slice(half));
      // The commit returns before the coordinator has written the markers, and
      // the offsets admin reads stop at the last stable offset: wait until the
      // second transaction (its messages and its marker) is behind it, or the
      // wait below would be met by the first transaction's offset.
      const high = String(half + 1 + (products.length - half) + 1);
      await until('the second transaction committed in the log', async () => (await admin.fetchTopicOffsets(productsTopic))[0]!.high === high);
      c = await startConsumer(env);
      try {
        // The last offset is the second commit marker: stored ends one before it.
        await until('the second transaction applied past the marker', async () => (await readStoredOffsets(pool, env.schemas, env.id)).get(`${productsTopic}/0`) === (BigInt(high) - 1n).toString());
        expect(c.consumer.retentionGaps()).toEqual([]);
        expect(c.lines.filter((l) => l.code === 'RETENTION_GAP')).toEqual([]);
        expect(c.lines.filter((l) => Number(l.level) >= 40)).toEqual([]);
        const want = new Set(products.map((e) => String((e.after ?? e.before)!.product_id)));
        const live = [...sim.rows.products.keys()];
        const got = (await pool.query(`SELECT product_id::text id FROM "${env.schemas.staging}".stg_products ORDER BY 1`)).rows.map((r) => r.id);
        expect(got.sort()).toEqual(live.filter((k) => want.has(k)).sort());
      } finally {
        await c.stop();
      }
    } finally {
      await tx.disconnect();
    }
  });
});

describe('a hole compaction left is not a gap', () => {
  it('stored offset inside a compacted range: the consumer seeks twice, finds the same later offset, moves past the hole and applies on', async () => {
    const env = await makeEnv('rgcp');
    const topic = `${env.id}.public.products`;
    // The products topic re-created compacted, with segments that roll and clean at once.
    await admin.deleteTopics({ topics: [topic] });
    await until('the topic to be gone', async () => !(await admin.listTopics()).includes(topic));
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, configEntries: [
      { name: 'cleanup.policy', value: 'compact' }, { name: 'segment.ms', value: '100' }, { name: 'min.cleanable.dirty.ratio', value: '0.001' },
      { name: 'min.compaction.lag.ms', value: '0' }, { name: 'delete.retention.ms', value: '0' },
    ] }] });
    const sim = new ShopSim(5);
    let id = '';
    sim.transaction(() => { id = sim.upsertProduct(); });
    for (let i = 0; i < 20; i++) sim.transaction(() => { sim.upsertProduct(id); });
    const others: string[] = [];
    // Roll segments: a message, a pause past segment.ms, another, so the run of one key sits in a closed segment.
    for (let i = 0; i < 3; i++) {
      await produce(env, sim.events.splice(0));
      await new Promise((r) => setTimeout(r, 300));
      sim.transaction(() => { others.push(sim.upsertProduct()); });
    }
    await produce(env, sim.events.splice(0));
    // Wait for the cleaner: the first message left is the last update of the key.
    const firstOffset = async () => {
      const c = kafka.consumer({ groupId: `${env.id}-peek-${Date.now()}` });
      await c.connect();
      let first: string | undefined;
      try {
        await c.subscribe({ topic, fromBeginning: true });
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 5000);
          void c.run({ eachBatch: async ({ batch }) => { first ??= batch.firstOffset() ?? undefined; clearTimeout(t); resolve(); } });
        });
      } finally {
        await c.disconnect();
      }
      return first;
    };
    const first = await until('compaction', async () => { const f = await firstOffset(); return f !== undefined && BigInt(f) > 0n && f; }, 120_000);
    expect((await admin.fetchTopicOffsets(topic))[0]!.low).toBe('0');
    // The group had applied nothing of it yet: stored offset 0, inside the compacted range.
    await pool.query(`INSERT INTO "${env.schemas.meta}".consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, 0, 0)`, [env.id, topic]);
    const c = await startConsumer(env);
    try {
      const high = (await admin.fetchTopicOffsets(topic))[0]!.high;
      await until('the compacted topic applied', async () => (await readStoredOffsets(pool, env.schemas, env.id)).get(`${topic}/0`) === high);
      expect(c.consumer.retentionGaps()).toEqual([]);
      expect(c.lines.filter((l) => l.code === 'RETENTION_GAP')).toEqual([]);
      expect(c.lines.some((l) => /compacted/.test(String(l.msg)) && l.stored === '0' && l.first === first)).toBe(true);
      const got = (await pool.query(`SELECT product_id::text id, price::text FROM "${env.schemas.staging}".stg_products ORDER BY 1`)).rows;
      const want = [...sim.rows.products.values()].map((r) => ({ id: String(r.product_id), price: String(r.price) })).sort((a, b) => a.id.localeCompare(b.id));
      expect(got.map((r) => ({ id: r.id, price: String(Number(r.price).toFixed(2)) }))).toEqual(want.map((r) => ({ id: r.id, price: Number(r.price).toFixed(2) })));
    } finally {
      await c.stop();
    }
  }, 240_000);
});

describe('changes lost to retention', () => {
  it('default stop: the partition is paused and reported with its offsets, the others keep being served; continue applies on only when set', async () => {
    const env = await makeEnv('rg');
    const ordersTopic = `${env.id}.public.orders`;
    const productsTopic = `${env.id}.public.products`;
    const sim = new ShopSim(99);
    sim.randomWorkload(60);
    await produce(env, sim.events);
    let c = await startConsumer(env);
    await waitCaughtUp(admin, pool, env.schemas, env.id, env.topics, { timeoutMs: 60_000 });
    await c.stop();
    const storedBefore = (await readStoredOffsets(pool, env.schemas, env.id)).get(`${ordersTopic}/0`)!;
    expect(BigInt(storedBefore)).toBeGreaterThan(0n);

    // Changes the group never saw, then removed from Kafka (what retention does to a stopped group).
    const more = new ShopSim(100);
    more.randomWorkload(30);
    await produce(env, more.events.filter((e) => e.table === 'orders'));
    const high = (await admin.fetchTopicOffsets(ordersTopic))[0]!.high;
    await admin.deleteTopicRecords({ topic: ordersTopic, partitions: [{ partition: 0, offset: high }] });
    expect((await admin.fetchTopicOffsets(ordersTopic))[0]!.low).toBe(high);
    const lost = (BigInt(high) - BigInt(storedBefore)).toString();

    // Seen without a running member too (status, the replay command).
    expect(await findRetentionGaps(admin, pool, env.schemas, env.id, env.topics)).toEqual([
      { topic: ordersTopic, partition: 0, storedOffset: storedBefore, logStartOffset: high, lost },
    ]);

    // `status` (no running member needed): the group is unhealthy, names the offsets lost and the way back, exit 1.
    const status = await collectStatus({
      processes: [], groups: [{ group: env.id, topics: env.topics }], sourceUrl: stackEnv.sourceUrl, warehouseUrl: stackEnv.warehouseUrl,
      kafkaBrokers: stackEnv.kafkaBrokers, topicPrefix: env.id, schemas: env.schemas, slot: `${env.id}_noslot`, walWarnBytes: 1n << 30n,
      redisKeyPrefix: `${env.id}:`, timeoutMs: 5000,
    });
    expect(status.groups[0]).toMatchObject({ group: env.id, state: 'unhealthy' });
    expect(status.groups[0]!.detail).toContain(`${ordersTopic}/0 offsets ${storedBefore}..${BigInt(high) - 1n} (${lost} messages)`);
    expect(status.groups[0]!.detail).toMatch(/re-snapshot.*replay --from-offset earliest/);
    expect(status.ok).toBe(false);
    expect(status.problems.some((p) => p.startsWith(`group ${env.id}:`))).toBe(true);

    c = await startConsumer(env);
    // The consumer process's health wiring (consumers/warehouse/main.ts): /readyz and the health_condition metric.
    const health = consumerHealth({
      process: 'consumer-warehouse', listen: { host: '127.0.0.1', port: 0, portSetting: 'CONSUMER_HEALTH_PORT' },
      watchdog: { ...loadWatchdogConfig({}), intervalMs: 200 }, kafka, pool, schemas: env.schemas, group: env.id, topics: env.topics,
      log: pino({ level: 'silent' }), onExit: () => {},
    });
    health.probe.watchRetentionGaps(() => c.consumer.retentionGaps());
    const hac = new AbortController();
    for (const svc of [...health.services, health.ready]) await svc.start(hac.signal);
    try {
      const gaps = await until('the gap to be reported', async () => { const g = c.consumer.retentionGaps(); return g.length > 0 && g; });
      const base = `http://127.0.0.1:${health.server.port}`;
      const ready = await until('/readyz to report the gap', async () => {
        const r = await fetch(`${base}/readyz`);
        const body = await r.json() as { reason?: string };
        return r.status === 503 && /retention-gap/.test(body.reason ?? '') && body;
      });
      expect(ready.reason).toContain(`${ordersTopic}/0: offsets ${storedBefore}..${BigInt(high) - 1n} lost (${lost} messages, paused)`);
      expect(ready.reason).toMatch(/re-snapshot.*replay --from-offset earliest/);
      expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/health_condition\{condition="retention-gap"\} 0/);
      expect(gaps).toEqual([expect.objectContaining({ topic: ordersTopic, partition: 0, storedOffset: storedBefore, logStartOffset: high, lost, action: 'paused' })]);
      const line = c.lines.find((l) => l.code === 'RETENTION_GAP');
      expect(line).toMatchObject({ level: 50, topic: ordersTopic, partition: 0, storedOffset: storedBefore, logStartOffset: high, lost });
      expect(String(line!.remedy)).toMatch(/re-snapshot.*replay --from-offset earliest/);
      // New orders after the gap are not applied either; other topics are.
      const next = new ShopSim(101);
      next.randomWorkload(20);
      await produce(env, next.events);
      const productsEnd = (await admin.fetchTopicOffsets(productsTopic))[0]!.high;
      await until('products to be applied past the gap elsewhere', async () => (await readStoredOffsets(pool, env.schemas, env.id)).get(`${productsTopic}/0`) === productsEnd);
      await new Promise((r) => setTimeout(r, 2000));
      expect((await readStoredOffsets(pool, env.schemas, env.id)).get(`${ordersTopic}/0`)).toBe(storedBefore);
      expect(c.consumer.retentionGaps()).toHaveLength(1);
    } finally {
      hac.abort();
      for (const svc of [...health.services, health.ready].reverse()) await svc.stop();
      await c.stop();
    }

    // An explicit continue: the skip is logged with the same figures and stored, then the partition is applied on.
    c = await startConsumer(env, 'continue');
    try {
      const end = (await admin.fetchTopicOffsets(ordersTopic))[0]!.high;
      await until('orders to be applied on after continue', async () => (await readStoredOffsets(pool, env.schemas, env.id)).get(`${ordersTopic}/0`) === end);
      expect(c.consumer.retentionGaps()).toEqual([expect.objectContaining({ topic: ordersTopic, storedOffset: storedBefore, logStartOffset: high, action: 'continued' })]);
      expect(c.lines.find((l) => l.code === 'RETENTION_GAP')).toMatchObject({ policy: 'continue', lost });
      expect(await findRetentionGaps(admin, pool, env.schemas, env.id, env.topics)).toEqual([]);
    } finally {
      await c.stop();
    }
  });
});
