import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import type pg from 'pg';
import { rebuildClickstream, verifyClickstream, type ModelCheck } from '../../consumers/clickstream/batch-recompute.ts';
import { applyClickBatch } from '../../consumers/clickstream/apply.ts';
import { ClickstreamConsumer } from '../../consumers/clickstream/consumer.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { planClickstream, produceClickstream, registerClickSchema, type Catalog, type ClickValue, type PlannedSend } from '../../src/generator/clickstream.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * The clickstream group against the real stack: generated traffic with
 * duplicates, out-of-order and too-late events, plus hand-made edge cases,
 * must leave every clickstream model equal to the batch SQL recomputation
 * (consumers/clickstream/batch-recompute.ts) row for row; bad messages go to
 * the DLQ without blocking; a replay into empty tables rebuilds the same rows.
 */
const id = uniqueId('click');
const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
const topic = `${id}.clickstream.events`;
const log = createLogger('test-clickstream', 'error');
const registry = createRegistry(stackEnv.registryUrl);
const HOUR = 3600_000;
const T0 = Date.UTC(2026, 2, 1, 9, 0, 0);
const LATENESS_US = 24n * 3600n * 1_000_000n;

let pool: pg.Pool;
let kafka: Kafka;
let admin: Admin;
let producer: Producer;
const consumers: ClickstreamConsumer[] = [];

async function startConsumer(group: string): Promise<ClickstreamConsumer> {
  const c = new ClickstreamConsumer({ kafka, registry, pool, schemas, group, topic, allowedLatenessUs: LATENESS_US, log, maxMessagesPerTx: 150 });
  consumers.push(c);
  await c.start(new AbortController().signal);
  return c;
}

/** Caught up: the stored Postgres offset of every partition reached the log end. */
async function waitCaughtUp(group: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ends = await admin.fetchTopicOffsets(topic);
    const { rows } = await pool.query<{ partition: number; next_offset: string }>(
      `SELECT partition, next_offset FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1 AND topic = $2`, [group, topic]);
    const stored = new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
    if (ends.every((e) => BigInt(e.high) === 0n || stored.get(e.partition) === BigInt(e.high))) return;
    if (Date.now() > deadline) throw new Error(`not caught up: ends ${JSON.stringify(ends)} stored ${JSON.stringify([...stored])}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function expectEqualToBatch(checks: ModelCheck[]): void {
  for (const c of checks) {
    expect({ table: c.table, missing: c.missing, unexpected: c.unexpected, sample: c.sample }).toEqual({ table: c.table, missing: 0, unexpected: 0, sample: [] });
    expect(c.actualRows, c.table).toBe(c.expectedRows);
  }
}

async function check(): Promise<ModelCheck[]> {
  const client = await pool.connect();
  try {
    return await verifyClickstream(client, schemas);
  } finally {
    client.release();
  }
}

function ev(anon: string, atMs: number, type: ClickValue['event_type'], eventId: string, extra: Partial<ClickValue> = {}): ClickValue {
  return { event_id: eventId, event_type: type, occurred_at: atMs, anonymous_id: anon, customer_id: null, product_id: null, quantity: null, unit_price: null, order_id: null, page_url: null, ...extra };
}
const uuid = (n: number) => `0000abcd-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const send = (values: ClickValue[]) => produceClickstream({ producer, admin, registry, topic }, values.map((value): PlannedSend => ({ value, kind: 'in_order' })));

const catalog: Catalog = {
  products: Array.from({ length: 20 }, (_, i) => ({ productId: 100 + i, price: `${(i * 7) % 90 + 1}.${String((i * 37) % 100).padStart(2, '0')}` })),
  customerIds: Array.from({ length: 30 }, (_, i) => 500 + i),
  orders: Array.from({ length: 40 }, (_, i) => ({ orderId: 9000 + i, customerId: 500 + (i % 30) })),
};

beforeAll(async () => {
  pool = createWarehousePool(stackEnv.warehouseUrl);
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  // Half of the orders the clickstream reports exist in stg_orders, so int_check_order has both answers.
  await pool.query(
    `INSERT INTO "${schemas.staging}".stg_orders (order_id, customer_id, order_date, status, updated_at, _source_lsn)
     SELECT o, 500 + (o - 9000) % 30, '2026-03-01T10:00:00Z', 'placed', '2026-03-01T10:00:00Z', 1 FROM generate_series(9000, 9019) AS o`);
  kafka = new kafkajs.Kafka({ clientId: id, brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await Promise.all([admin.connect(), producer.connect()]);
});

afterAll(async () => {
  for (const c of consumers) await c.stop();
  await producer?.disconnect();
  await admin?.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
  await admin?.disconnect();
  const subject = `${stackEnv.registryUrl}/subjects/${encodeURIComponent(`${topic}-value`)}`;
  await fetch(subject, { method: 'DELETE' }).then(() => fetch(`${subject}?permanent=true`, { method: 'DELETE' })).catch(() => {});
  for (const s of [schemas.analytics, schemas.staging]) await pool?.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await pool?.query(`DELETE FROM "${schemas.meta}".schema_migrations WHERE namespace = $1`, [`${schemas.staging}/${schemas.analytics}`]).catch(() => {});
  await pool?.query(`DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
  await pool?.end();
});

describe('clickstream consumer', () => {
  const group = `${id}-clickstream`;
  const plan = planClickstream({ seed: 11, visitors: 150, startMs: T0, spanMs: 8 * HOUR, lateRate: 0.1, duplicateRate: 0.06, tooLateRate: 0.1, catalog });

  it('generated traffic with duplicates, out-of-order and too-late events equals the batch recomputation', async () => {
    // Two waves, so late events and duplicates meet sessions committed by earlier transactions.
    const half = Math.floor(plan.length / 2);
    await produceClickstream({ producer, admin, registry, topic, partitions: 3 }, plan.slice(0, half));
    await startConsumer(group);
    await waitCaughtUp(group);
    await produceClickstream({ producer, admin, registry, topic }, plan.slice(half));
    await waitCaughtUp(group);

    const checks = await check();
    expectEqualToBatch(checks);
    for (const c of checks) expect(c.expectedRows, `${c.table} must not be empty`).toBeGreaterThan(0);

    const distinct = new Set(plan.map((p) => p.value.event_id));
    const { rows } = await pool.query<{ event_id: string; late: boolean }>(`SELECT event_id::text, _beyond_lateness AS late FROM "${schemas.staging}".stg_events`);
    expect(rows).toHaveLength(distinct.size);
    const flagged = rows.filter((r) => r.late).map((r) => r.event_id).sort();
    const planned = plan.filter((p) => p.kind === 'beyond_lateness').map((p) => p.value.event_id).sort();
    expect(planned.length).toBeGreaterThan(0);
    expect(flagged).toEqual(planned);
    expect(plan.filter((p) => p.kind === 'duplicate').length).toBeGreaterThan(0);
    const fct = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM "${schemas.analytics}".fct_events`);
    expect(Number(fct.rows[0]!.n)).toBe(distinct.size - planned.length);
    const found = await pool.query<{ exists: boolean; n: string }>(`SELECT order_exists AS exists, count(*) AS n FROM "${schemas.analytics}".int_check_order WHERE order_placed GROUP BY 1`);
    expect(found.rows.map((r) => r.exists).sort()).toEqual([false, true]);
  });

  it('late events merge sessions and move session ids; ties and case-variant duplicates resolve as in batch', async () => {
    const anon = `${id}-bridge`;
    await send([
      ev(anon, T0, 'page_view', uuid(1), { customer_id: 501 }),
      ev(anon, T0 + 50 * 60_000, 'add_to_cart', uuid(2), { product_id: 100, quantity: 2, unit_price: '0.10' }),
      // same instant, different customers: the larger event_id is "last"
      ev(anon, T0 + 50 * 60_000, 'checkout_started', uuid(3), { customer_id: 502 }),
      ev(anon, T0 + 50 * 60_000, 'add_to_cart', uuid(4), { product_id: 101, quantity: 1, unit_price: '0.20' }),
    ]);
    await waitCaughtUp(group);
    const sessions = () => pool.query<{ session_id: string; customer_id: string | null; event_count: number }>(
      `SELECT session_id, customer_id, event_count FROM "${schemas.analytics}".int_session_bounds WHERE anonymous_id = $1 ORDER BY session_start`, [anon]);
    expect((await sessions()).rows).toHaveLength(2);
    // Bridges the 50-minute gap: one session. A second event earlier than all moves the session start and so its id.
    await send([ev(anon, T0 + 25 * 60_000, 'page_view', uuid(5)), ev(anon, T0 - 10 * 60_000, 'page_view', uuid(6)), ev(anon, T0 + 60_000, 'page_view', uuid(1).toUpperCase())]);
    await waitCaughtUp(group);
    const merged = (await sessions()).rows;
    expect(merged).toHaveLength(1);
    expect(merged[0]).toMatchObject({ customer_id: '502', event_count: 6 });
    const cart = await pool.query<{ cart_value: string }>(`SELECT cart_value FROM "${schemas.analytics}".int_cart_value WHERE session_id = $1`, [merged[0]!.session_id]);
    expect(cart.rows[0]!.cart_value).toBe('0.40');
    expectEqualToBatch(await check());
  });

  it('an order_placed without order_id converts its session; int_check_order says the order does not exist', async () => {
    const anon = `${id}-no-order-id`;
    await send([
      ev(anon, T0, 'add_to_cart', uuid(10), { product_id: 100, quantity: 1, unit_price: '5.00' }),
      ev(anon, T0 + 60_000, 'checkout_started', uuid(11)),
      ev(anon, T0 + 120_000, 'order_placed', uuid(12), { order_id: null }),
    ]);
    await waitCaughtUp(group);
    const { rows: sessions } = await pool.query<{ session_id: string; converted: boolean; reached_checkout: boolean; event_count: number }>(
      `SELECT session_id, converted, reached_checkout, event_count FROM "${schemas.analytics}".int_session_bounds WHERE anonymous_id = $1`, [anon]);
    expect(sessions).toEqual([{ session_id: expect.any(String), converted: true, reached_checkout: true, event_count: 3 }]);
    const { rows: checked } = await pool.query(
      `SELECT order_placed, order_id, order_exists FROM "${schemas.analytics}".int_check_order WHERE session_id = $1`, [sessions[0]!.session_id]);
    expect(checked).toEqual([{ order_placed: true, order_id: null, order_exists: false }]);
    const dead = await pool.query(`SELECT 1 FROM "${schemas.meta}".dead_letters WHERE consumer_group = $1`, [group]);
    expect(dead.rows).toEqual([]);
    expectEqualToBatch(await check());
  });

  it('a malformed message goes to the DLQ with its bytes, error and source position, and does not block the rest', async () => {
    const anon = `${id}-after-bad`;
    const schemaId = await registerClickSchema(registry, topic);
    const garbage = Buffer.from('definitely not avro');
    const noPrice = await registry.encode(schemaId, ev(anon, T0, 'add_to_cart', uuid(20), { product_id: 100, quantity: 1 }));
    await producer.send({ topic, acks: -1, messages: [{ key: anon, value: garbage }, { key: anon, value: noPrice }] });
    await send([ev(anon, T0 + 1000, 'page_view', uuid(21)), ev(anon, T0 + 2000, 'product_view', uuid(22), { product_id: 100 })]);
    await waitCaughtUp(group);

    const staged = await pool.query<{ event_id: string }>(`SELECT event_id::text FROM "${schemas.staging}".stg_events WHERE anonymous_id = $1 ORDER BY event_id`, [anon]);
    expect(staged.rows.map((r) => r.event_id)).toEqual([uuid(21), uuid(22)]);

    const dlqMessages = await readTopic(`${topic}.dlq`, 2);
    const byValue = (b: Buffer) => dlqMessages.find((m) => m.value?.equals(b));
    const g = byValue(garbage);
    const n = byValue(noPrice);
    expect(g && n).toBeTruthy();
    expect(g!.headers['dlq.error']).toMatch(/^DECODE_FAILED: /);
    expect(n!.headers['dlq.error']).toMatch(/^VALIDATION_FAILED: add_to_cart needs unit_price/);
    for (const m of [g!, n!]) {
      expect(m.headers['dlq.source.topic']).toBe(topic);
      expect(m.key).toBe(anon);
    }
    const noted = await pool.query<{ partition: number; offset: string; error: string }>(
      `SELECT partition, "offset", error FROM "${schemas.meta}".dead_letters WHERE consumer_group = $1 ORDER BY "offset"`, [group]);
    expect(noted.rows).toHaveLength(2);
    expect(noted.rows.map((r) => [String(r.partition), r.offset])).toEqual([g!, n!].map((m) => [m.headers['dlq.source.partition'], m.headers['dlq.source.offset']]));
    expectEqualToBatch(await check());
  });

  it('a restart with Kafka offsets reset applies only new events; a replay into emptied tables under a new group rebuilds the same rows, lateness flags included', async () => {
    const snapshot = async () => {
      const q = async (sql: string) => (await pool.query(sql)).rows;
      return {
        events: await q(`SELECT event_id, _beyond_lateness FROM "${schemas.staging}".stg_events ORDER BY event_id`),
        sessions: await q(`SELECT * FROM "${schemas.analytics}".int_session_bounds ORDER BY session_id`),
        carts: await q(`SELECT * FROM "${schemas.analytics}".int_cart_value ORDER BY session_id`),
        last: await q(`SELECT * FROM "${schemas.analytics}".int_last_session_per_customer ORDER BY customer_id`),
        mart: await q(`SELECT * FROM "${schemas.analytics}".mart_cart_value ORDER BY date_day`),
      };
    };
    for (const c of consumers.splice(0)) await c.stop();

    // Restart of the same group with Kafka's committed offsets reset to the
    // start: Postgres holds the position, so only the two new events count.
    await admin.resetOffsets({ groupId: group, topic, earliest: true });
    const again = await startConsumer(group);
    const anon = `${id}-after-restart`;
    await send([ev(anon, T0, 'page_view', uuid(30)), ev(anon, T0 + 1000, 'page_view', uuid(31))]);
    await waitCaughtUp(group);
    expect(again.stats).toMatchObject({ inserted: 2, duplicates: 0 });
    // The in-transaction guard on its own: offsets below the stored one are skipped whole.
    const replayed = await applyClickBatch(pool, schemas, { group, topic, partition: 0, messages: [{ offset: '0', event: null }], deadLetters: [] }, LATENESS_US);
    expect(replayed.skippedAsApplied).toBe(1);
    expectEqualToBatch(await check());

    const before = await snapshot();
    for (const c of consumers.splice(0)) await c.stop();
    await pool.query(`TRUNCATE "${schemas.staging}".stg_events, "${schemas.analytics}".fct_events, "${schemas.analytics}".int_session_bounds,
      "${schemas.analytics}".int_cart_value, "${schemas.analytics}".int_last_session_per_customer, "${schemas.analytics}".mart_cart_value`);
    const replayGroup = `${id}-replay`;
    await startConsumer(replayGroup);
    await waitCaughtUp(replayGroup);
    expect(await snapshot()).toEqual(before);
    expect(before.sessions.length).toBeGreaterThan(0);

    // The full refresh used for repairs yields the same rows too.
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await rebuildClickstream(client, schemas);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(await snapshot()).toEqual(before);
  });

  it('an event Postgres refuses despite validation is isolated and dead-lettered; its neighbours in the slice are applied', async () => {
    // Stands in for any data error validation did not foresee (the replay group's consumer is still running).
    const replayGroup = `${id}-replay`;
    await pool.query(`ALTER TABLE "${schemas.staging}".stg_events ADD CONSTRAINT poison CHECK (page_url IS DISTINCT FROM '/poison')`);
    const anon = `${id}-poison`;
    await send([ev(anon, T0, 'page_view', uuid(40)), ev(anon, T0 + 1000, 'page_view', uuid(41), { page_url: '/poison' }), ev(anon, T0 + 2000, 'page_view', uuid(42))]);
    await waitCaughtUp(replayGroup);
    const staged = await pool.query<{ event_id: string }>(`SELECT event_id::text FROM "${schemas.staging}".stg_events WHERE anonymous_id = $1 ORDER BY event_id`, [anon]);
    expect(staged.rows.map((r) => r.event_id)).toEqual([uuid(40), uuid(42)]);
    const noted = await pool.query<{ error: string }>(`SELECT error FROM "${schemas.meta}".dead_letters WHERE consumer_group = $1`, [replayGroup]);
    expect(noted.rows.filter((r) => /rejected by the warehouse.*poison/.test(r.error))).toHaveLength(1);
    // 2 from the malformed-message test, the same 2 again from the replay group, then this one.
    const dlq = await readTopic(`${topic}.dlq`, 5);
    expect(dlq.filter((m) => m.key === anon && /^VALIDATION_FAILED: rejected by the warehouse/.test(m.headers['dlq.error'] ?? ''))).toHaveLength(1);
    expectEqualToBatch(await check());
  });
});

async function readTopic(name: string, count: number, timeoutMs = 30_000): Promise<Array<{ key: string | null; value: Buffer | null; headers: Record<string, string> }>> {
  const reader = kafka.consumer({ groupId: `${id}-reader-${Date.now()}` });
  const got: Array<{ key: string | null; value: Buffer | null; headers: Record<string, string> }> = [];
  await reader.connect();
  try {
    await reader.subscribe({ topic: name, fromBeginning: true });
    const done = new Promise<void>((resolve) => {
      void reader.run({
        eachMessage: async ({ message }) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
          got.push({ key: message.key?.toString('utf8') ?? null, value: message.value, headers });
          if (got.length >= count) resolve();
        },
      });
    });
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${got.length} of ${count} messages on ${name}`)), timeoutMs))]);
    return got;
  } finally {
    await reader.disconnect();
  }
}
