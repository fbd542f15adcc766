import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import kafkajs, { type Admin, type Producer } from 'kafkajs';
import type pg from 'pg';
import { verifyClickstream } from '../../consumers/clickstream/batch-recompute.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { planClickstream, produceClickstream } from '../../src/generator/clickstream.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * SPEC §4 for the clickstream group: SIGKILL the consumer process at random
 * points while traffic (with duplicates, late and too-late events and some
 * undecodable messages) flows; after a final run catches up, staging holds
 * every valid event once, each bad message is noted once, and every model
 * equals the batch recomputation.
 */
const id = uniqueId('click_kill');
const schemas: WarehouseSchemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
const topic = `${id}.clickstream.events`;
const group = `${id}-clickstream`;
const registry = createRegistry(stackEnv.registryUrl);

let pool: pg.Pool;
let admin: Admin;
let producer: Producer;

async function applied(): Promise<bigint> {
  const { rows } = await pool.query<{ n: string | null }>(`SELECT sum(next_offset)::text AS n FROM "${schemas.meta}".consumer_offsets WHERE consumer_group = $1`, [group]);
  return BigInt(rows[0]?.n ?? '0');
}

async function logEnd(): Promise<bigint> {
  return (await admin.fetchTopicOffsets(topic)).reduce((acc, p) => acc + BigInt(p.high), 0n);
}

beforeAll(async () => {
  pool = createWarehousePool(stackEnv.warehouseUrl);
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  const kafka = new kafkajs.Kafka({ clientId: id, brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
  admin = kafka.admin();
  producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await Promise.all([admin.connect(), producer.connect()]);
});

afterAll(async () => {
  await producer?.disconnect();
  await admin?.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
  await admin?.disconnect();
  const subject = `${stackEnv.registryUrl}/subjects/${encodeURIComponent(`${topic}-value`)}`;
  await fetch(subject, { method: 'DELETE' }).then(() => fetch(`${subject}?permanent=true`, { method: 'DELETE' })).catch(() => {});
  for (const s of [schemas.analytics, schemas.staging, schemas.meta]) await pool?.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await pool?.end();
});

describe('clickstream consumer crash safety', () => {
  it('survives SIGKILLs at random points: every valid event once, every bad message noted once, models equal the batch SQL', async () => {
    const plan = planClickstream({ seed: 23, visitors: 350, startMs: Date.UTC(2026, 4, 1, 8), spanMs: 10 * 3600_000, lateRate: 0.1, duplicateRate: 0.06, tooLateRate: 0.1 });
    const main = fileURLToPath(new URL('../../consumers/clickstream/main.ts', import.meta.url));
    const env = {
      ...process.env,
      WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, KAFKA_BROKERS: stackEnv.kafkaBrokers.join(','), SCHEMA_REGISTRY_URL: stackEnv.registryUrl,
      STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta,
      CLICKSTREAM_TOPIC: topic, CLICKSTREAM_GROUP: group, LOG_LEVEL: 'error', CLICKSTREAM_HEALTH_PORT: '0',
      // Small transactions and a short session, so kills land mid-stream and the group recovers fast.
      CLICKSTREAM_MAX_MESSAGES_PER_TX: '20', CLICKSTREAM_SESSION_TIMEOUT_MS: '6000',
    };
    const spawnConsumer = (): ChildProcess => spawn(process.execPath, ['--import', 'tsx', main], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

    const chunks = 5;
    const size = Math.ceil(plan.length / chunks);
    const lagAtKill: bigint[] = [];
    for (let i = 0; i < chunks; i++) {
      await produceClickstream({ producer, admin, registry, topic, partitions: 3 }, plan.slice(i * size, (i + 1) * size));
      await producer.send({ topic, acks: -1, messages: [{ key: `bad-${i}`, value: Buffer.from(`garbage ${i}`) }] });
      const child = spawnConsumer();
      const before = await applied();
      const until = Date.now() + 60_000;
      while ((await applied()) <= before && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)));
      child.kill('SIGKILL');
      await exited(child);
      lagAtKill.push((await logEnd()) - (await applied()));
    }
    const final = spawnConsumer();
    try {
      const until = Date.now() + 120_000;
      while ((await applied()) < (await logEnd())) {
        if (Date.now() > until) throw new Error('final consumer did not catch up');
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      final.kill('SIGTERM');
      await exited(final);
    }

    expect(lagAtKill.filter((lag) => lag > 0n).length, `lag at each kill: ${lagAtKill.join(',')}`).toBeGreaterThan(chunks / 2);
    const staged = await pool.query<{ event_id: string; late: boolean }>(`SELECT event_id::text, _beyond_lateness AS late FROM "${schemas.staging}".stg_events`);
    expect(new Set(staged.rows.map((r) => r.event_id))).toEqual(new Set(plan.map((p) => p.value.event_id)));
    expect(staged.rows.filter((r) => r.late).map((r) => r.event_id).sort()).toEqual(plan.filter((p) => p.kind === 'beyond_lateness').map((p) => p.value.event_id).sort());
    const dead = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM "${schemas.meta}".dead_letters WHERE consumer_group = $1`, [group]);
    expect(Number(dead.rows[0]!.n)).toBe(chunks);
    const client = await pool.connect();
    try {
      for (const c of await verifyClickstream(client, schemas)) {
        expect({ table: c.table, missing: c.missing, unexpected: c.unexpected }).toEqual({ table: c.table, missing: 0, unexpected: 0 });
        expect(c.expectedRows, c.table).toBeGreaterThan(0);
      }
    } finally {
      client.release();
    }
  }, 400_000);
});
