import type pg from 'pg';
import { clvPayloadSql } from '../../consumers/warehouse/derived-sql.ts';
import { clvDeletedKey, clvKey, clvKeyId, clvWriteArgs, withClvWrite } from '../sinks/redis/clv-redis.ts';
import { escapeGlob, scanKeys, scriptBatch, type RedisClient } from '../sinks/redis/redis-client.ts';
import { ClvPostgres } from './clv-pg.ts';

/**
 * Refills Redis from analytics.customer_lifetime_value without a replay
 * (SPEC §4: "Redis loss is repaired from Postgres"), safely while consumers
 * keep writing:
 *
 * - every row goes through the consumers' own version-guarded script
 *   (src/sinks/redis/clv-write.lua) with the payload they write
 *   (clvPayloadSql), so a figure a consumer wrote after we read the row, or a
 *   newer removal marker, is never overwritten by our older one;
 * - a hash of a customer without a CLV row is removed only if it still holds
 *   the version we saw, so a row a consumer commits and flushes meanwhile
 *   survives (see REMOVE_IF_UNCHANGED).
 *
 * Memory stays bounded: rows come in keyset pages, keys in SCAN batches.
 * On a Redis Cluster the writes go to each key's master and the removal
 * scan visits every master (src/sinks/redis/redis-client.ts).
 */

// KEYS[1] CLV hash, KEYS[2] its removal marker; ARGV[1] the version the
// rebuild saw. Deletes only an unchanged hash, and leaves a marker at that
// version (like the consumers' own removals) so no older pending figure can
// bring the hash back; every later write has a higher version and passes.
const REMOVE_IF_UNCHANGED = `
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local marker = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[1]) > marker then redis.call('SET', KEYS[2], ARGV[1]) end
return 1`;

type ScriptedRedis = RedisClient & {
  clvRemoveIfUnchanged(hash: string, marker: string, version: string): Promise<number>;
};

function withScripts(redis: RedisClient): ScriptedRedis {
  const r = withClvWrite(redis) as ScriptedRedis;
  // defineCommand sends EVALSHA and falls back to EVAL after a NOSCRIPT (a flushed or restarted Redis).
  if (typeof r.clvRemoveIfUnchanged !== 'function') redis.defineCommand('clvRemoveIfUnchanged', { numberOfKeys: 2, lua: REMOVE_IF_UNCHANGED });
  return r;
}

export interface RebuildProgress {
  phase: 'refill' | 'remove';
  /** CLV rows read from Postgres so far, of `total` counted at the start (rows may come and go meanwhile). */
  rows: number;
  total: number;
  /** Hashes written. */
  written: number;
  /** Rows whose hash already held this version or a newer one (or a newer removal marker). */
  unchanged: number;
  /** Keys examined in the removal phase. */
  scanned: number;
  removed: number;
}

export interface RebuildOptions {
  pool: pg.Pool;
  redis: RedisClient;
  analyticsSchema: string;
  keyPrefix: string;
  pageSize?: number;
  onProgress?: (p: RebuildProgress) => void;
  signal?: AbortSignal;
}

const INT64_MIN = '-9223372036854775808';

export async function rebuildRedisClv(opts: RebuildOptions): Promise<RebuildProgress> {
  const { pool, keyPrefix, signal } = opts;
  const pageSize = opts.pageSize ?? 1000;
  const redis = withScripts(opts.redis);
  const an = `"${opts.analyticsSchema}"`;
  const store = new ClvPostgres(pool, opts.analyticsSchema);

  const { rows: countRows } = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${an}.customer_lifetime_value`);
  const p: RebuildProgress = { phase: 'refill', rows: 0, total: Number(countRows[0]?.n ?? 0), written: 0, unchanged: 0, scanned: 0, removed: 0 };

  // The page is chosen by the primary key index inside the subquery; the
  // payload itself comes from the consumers' SQL so the fields are identical.
  const pageSql = `${clvPayloadSql(an, `v.customer_id IN (SELECT customer_id FROM ${an}.customer_lifetime_value WHERE customer_id > $1::bigint ORDER BY customer_id LIMIT $2)`)} ORDER BY v.customer_id`;
  let after = INT64_MIN;
  for (;;) {
    signal?.throwIfAborted();
    const { rows } = await pool.query<{ customer_id: string; version: string; payload: Record<string, string | null> }>(pageSql, [after, pageSize]);
    if (rows.length === 0) break;
    const results = await scriptBatch(redis, 'clvWrite', rows.map((r) => {
      const pairs = Object.entries(r.payload).flatMap(([k, v]) => (v === null ? [] : [k, v]));
      return clvWriteArgs(redis, keyPrefix, r.customer_id, [r.version, 'set', ...pairs]);
    }));
    for (const res of results) {
      if (res === 1) p.written++;
      else p.unchanged++;
    }
    p.rows += rows.length;
    after = rows[rows.length - 1]!.customer_id;
    opts.onProgress?.({ ...p });
  }

  p.phase = 'remove';
  for await (const keys of scanKeys(redis, `${escapeGlob(clvKey(keyPrefix, ''))}*`, pageSize)) {
    signal?.throwIfAborted();
    const ids = keys.map((k) => clvKeyId(keyPrefix, k)).filter((id) => id !== undefined);
    p.scanned += keys.length;
    if (ids.length === 0) continue;
    // Versions first, Postgres second: consumers commit to Postgres before
    // they write Redis, so a version seen here whose customer has no row in
    // the later Postgres read is stale for certain. The other order could see
    // "no row", then a row committed and flushed meanwhile, and delete it.
    const versions = await Promise.all(ids.map((id) => redis.hget(clvKey(keyPrefix, id, redis.isCluster), 'version')));
    const live = await store.existing(ids);
    const results = await Promise.all(ids.map((id, i) =>
      live.has(id) || versions[i] == null ? false : removeHashIfUnchanged(redis, keyPrefix, id, versions[i]!)));
    p.removed += results.filter(Boolean).length;
    opts.onProgress?.({ ...p });
  }
  opts.onProgress?.({ ...p });
  return p;
}

/**
 * Removes the CLV hash of `customerId` if it still holds `version`, leaving a
 * removal marker at that version; false when a writer got there first.
 */
export async function removeHashIfUnchanged(redis: RedisClient, keyPrefix: string, customerId: string, version: string): Promise<boolean> {
  const c = redis.isCluster;
  const r = await withScripts(redis).clvRemoveIfUnchanged(clvKey(keyPrefix, customerId, c), clvDeletedKey(keyPrefix, customerId, c), version);
  return r === 1;
}
