import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import kafkajs, { type Admin } from 'kafkajs';
import type pg from 'pg';
import { verifyClickstream } from '../../consumers/clickstream/batch-recompute.ts';
import { groupLag } from '../../src/consumer/lag.ts';
import { runVerify } from '../../src/rebuild/verify.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { diffRedisClv } from '../../src/sinks/redis/compare.ts';
import type { RedisClient } from '../../src/sinks/redis/redis-client.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import { sleep } from '../../src/util/sleep.ts';
import { highWatermarks } from './probes.ts';

/**
 * The end of a chaos run, after the load stopped: wait until the capture
 * confirmed all WAL written and both groups applied all of Kafka and the
 * Redis outbox drained, then compare everything: `verify` (every derived
 * table against its batch recomputation, the data checks, staging against
 * the source), Redis against Postgres, the clickstream models against their
 * batch SQL.
 */
export interface TableComparison {
  table: string;
  rows: number;
  missing: number;
  excess: number;
  differing?: number;
  /** Up to five keys of each kind of difference, when there is one (to look the rows up after a failed run). */
  keys?: { missing: string[]; excess: string[]; differing?: string[] };
}

export interface FinalComparison {
  caughtUpMs: number | null;
  tables: TableComparison[];
  checksFailed: string[];
  redis: { keys: number; missing: number; stale: number; extra: number };
  rowsCompared: number;
  ok: boolean;
}

export async function waitCatchUp(o: { source: pg.Pool; warehouse: pg.Pool; admin: Admin; schemas: WarehouseSchemas; slot: string; groups: Array<{ group: string; topics: string[] }>; timeoutMs: number }): Promise<number | null> {
  const t0 = Date.now();
  const { rows } = await o.source.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
  const end = parseLsn(rows[0]!.l);
  const { meta } = quoted(o.schemas);
  let quietSince = 0;
  while (Date.now() - t0 < o.timeoutMs) {
    try {
      const slot = await o.source.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [o.slot]);
      const confirmed = slot.rows[0] ? parseLsn(slot.rows[0].l) : 0n;
      let lag = 0;
      for (const g of o.groups) lag += await groupLag(o.admin, o.warehouse, o.schemas, g.group, g.topics);
      const outbox = Number((await o.warehouse.query(`SELECT count(*) AS n FROM ${meta}.redis_outbox`)).rows[0].n);
      // Twice in a row a second apart: a batch in flight when lag first read 0 has committed too.
      if (confirmed >= end && lag === 0 && outbox === 0) {
        if (quietSince && Date.now() - quietSince >= 1000) return Date.now() - t0;
        quietSince ||= Date.now();
      } else quietSince = 0;
    } catch {
      quietSince = 0;
    }
    await sleep(500);
  }
  return null;
}

export async function compareAll(o: { source: pg.Pool; warehouse: pg.Pool; redis: RedisClient; schemas: WarehouseSchemas; redisKeyPrefix: string; caughtUpMs: number | null }): Promise<FinalComparison> {
  const wh = await o.warehouse.connect();
  const src = await o.source.connect();
  try {
    const v = await runVerify(wh, o.schemas, { source: { client: src, schema: 'public' } });
    const { an } = quoted(o.schemas);
    const tables: TableComparison[] = [];
    const keys = (missing: string[], excess: string[], differing?: string[]) =>
      missing.length + excess.length + (differing?.length ?? 0) > 0 ? { keys: { missing, excess, ...(differing?.length ? { differing } : {}) } } : {};
    for (const s of v.source ?? []) tables.push({ table: `staging.stg_${s.table}`, rows: s.sourceRows, missing: s.missing, excess: s.unexpected, differing: s.differing, ...keys(s.samples.missing, s.samples.unexpected, s.samples.differing) });
    for (const d of v.recompute) {
      const n = Number((await wh.query(`SELECT count(*) AS n FROM ${an}.${d.table}`)).rows[0].n);
      tables.push({ table: `analytics.${d.table}`, rows: n, missing: d.missing, excess: d.unexpected, ...keys(d.keys.missing, d.keys.unexpected) });
    }
    for (const m of await verifyClickstream(wh, o.schemas)) tables.push({ table: `analytics.${m.table}`, rows: m.expectedRows, missing: m.missing, excess: m.unexpected });
    const diff = await diffRedisClv(o.warehouse, o.redis, o.schemas, o.redisKeyPrefix);
    const clvRows = Number((await wh.query(`SELECT count(*) AS n FROM ${an}.customer_lifetime_value`)).rows[0].n);
    const redis = { keys: clvRows, missing: diff.missing.length, stale: diff.stale.length, extra: diff.extra.length };
    const checksFailed = v.checks.filter((c) => c.failures > 0).map((c) => `${c.name}: ${c.failures}`);
    const ok = tables.every((t) => t.missing === 0 && t.excess === 0 && !t.differing) && checksFailed.length === 0 && redis.missing + redis.stale + redis.extra === 0 && o.caughtUpMs !== null;
    return { caughtUpMs: o.caughtUpMs, tables, checksFailed, redis, rowsCompared: tables.reduce((a, t) => a + t.rows, 0) + clvRows, ok };
  } finally {
    src.release();
    wh.release();
  }
}

/** Order id -> partition and offset of its first record in the orders topic, read from the beginning to the high watermarks. */
export async function firstOrderRecords(o: { brokers: string[]; admin: Admin; registryUrl: string; topic: string }): Promise<Map<number, { partition: number; offset: bigint }>> {
  const highs = await highWatermarks(o.admin, [o.topic]);
  const left = new Map([...highs].filter(([, h]) => h > 0n).map(([k, h]) => [Number(k.slice(o.topic.length + 1)), h]));
  const out = new Map<number, { partition: number; offset: bigint }>();
  if (left.size === 0) return out;
  const registry = new SchemaRegistry({ host: o.registryUrl });
  const kafka = new kafkajs.Kafka({ clientId: 'chaos-check', brokers: o.brokers, logLevel: kafkajs.logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `chaos-check-${Date.now()}`, maxBytesPerPartition: 8 << 20 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: o.topic, fromBeginning: true });
    let done!: () => void;
    const finished = new Promise<void>((r) => { done = r; });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          if (m.key) {
            const key = (await registry.decode(m.key)) as { order_id: number | bigint };
            const id = Number(key.order_id);
            const offset = BigInt(m.offset);
            const had = out.get(id);
            if (!had || offset < had.offset) out.set(id, { partition: batch.partition, offset });
          }
          const high = left.get(batch.partition);
          if (high !== undefined && BigInt(m.offset) + 1n >= high) left.delete(batch.partition);
        }
        if (left.size === 0) done();
      },
    });
    await Promise.race([finished, sleep(120_000).then(() => { throw new Error(`reading ${o.topic} did not reach its end in 120 s`); })]);
  } finally {
    await consumer.disconnect().catch(() => {});
  }
  return out;
}
