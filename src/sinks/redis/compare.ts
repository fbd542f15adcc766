import type pg from 'pg';
import { clvPayloadSql } from '../../../consumers/warehouse/derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../postgres/pool.ts';
import { clvKey, clvKeyId } from './clv-redis.ts';
import { escapeGlob, scanKeys, type RedisClient } from './redis-client.ts';

/**
 * Differences between the CLV hashes in Redis and the rows in Postgres
 * (SPEC §4: equal once caught up). Used by tests and by `verify`. On a
 * Redis Cluster the scan for keys without a row covers every master.
 */
export interface RedisDiff {
  missing: string[];
  stale: string[];
  extra: string[];
}

export async function diffRedisClv(pool: pg.Pool, redis: RedisClient, schemas: WarehouseSchemas, keyPrefix: string): Promise<RedisDiff> {
  const { an } = quoted(schemas);
  const { rows } = await pool.query<{ customer_id: string; version: string; payload: Record<string, string | null> }>(clvPayloadSql(an));
  const diff: RedisDiff = { missing: [], stale: [], extra: [] };
  const live = new Set<string>();
  const hashes = await inPages(rows, (r) => redis.hgetall(clvKey(keyPrefix, r.customer_id, redis.isCluster)));
  for (const [i, r] of rows.entries()) {
    live.add(r.customer_id);
    const got = hashes[i]!;
    if (Object.keys(got).length === 0) {
      diff.missing.push(r.customer_id);
      continue;
    }
    const want: Record<string, string> = { version: r.version };
    for (const [k, v] of Object.entries(r.payload)) if (v !== null) want[k] = v;
    const same = Object.keys(want).length === Object.keys(got).length && Object.entries(want).every(([k, v]) => got[k] === v);
    if (!same) diff.stale.push(r.customer_id);
  }
  for await (const keys of scanKeys(redis, `${escapeGlob(keyPrefix)}clv:*`)) {
    for (const k of keys) {
      const id = clvKeyId(keyPrefix, k);
      if (id !== undefined && !live.has(id)) diff.extra.push(id);
    }
  }
  return diff;
}

/** Reads in pages of concurrent commands (one pipeline's worth each), instead of one round trip per row. */
async function inPages<T, R>(items: readonly T[], fn: (x: T) => Promise<R>, size = 500): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}
