import type { Redis } from 'ioredis';
import type pg from 'pg';
import { clvPayloadSql } from '../../../consumers/warehouse/derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../postgres/pool.ts';
import { clvKey } from './clv-redis.ts';

/**
 * Differences between the CLV hashes in Redis and the rows in Postgres
 * (SPEC §4: equal once caught up). Used by tests and by `verify`.
 */
export interface RedisDiff {
  missing: string[];
  stale: string[];
  extra: string[];
}

export async function diffRedisClv(pool: pg.Pool, redis: Redis, schemas: WarehouseSchemas, keyPrefix: string): Promise<RedisDiff> {
  const { an } = quoted(schemas);
  const { rows } = await pool.query<{ customer_id: string; version: string; payload: Record<string, string | null> }>(clvPayloadSql(an));
  const diff: RedisDiff = { missing: [], stale: [], extra: [] };
  const live = new Set<string>();
  for (const r of rows) {
    live.add(r.customer_id);
    const got = await redis.hgetall(clvKey(keyPrefix, r.customer_id));
    if (Object.keys(got).length === 0) {
      diff.missing.push(r.customer_id);
      continue;
    }
    const want: Record<string, string> = { version: r.version };
    for (const [k, v] of Object.entries(r.payload)) if (v !== null) want[k] = v;
    const same = Object.keys(want).length === Object.keys(got).length && Object.entries(want).every(([k, v]) => got[k] === v);
    if (!same) diff.stale.push(r.customer_id);
  }
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}clv:*`, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) {
      const id = k.slice(`${keyPrefix}clv:`.length);
      if (/^\d+$/.test(id) && !live.has(id)) diff.extra.push(id);
    }
  } while (cursor !== '0');
  return diff;
}
