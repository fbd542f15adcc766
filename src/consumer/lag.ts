import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { readPartitionLag, totalLag } from '../health/group-lag.ts';
import { readStoredOffsets } from '../sinks/postgres/batch-tx.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { sleep } from '../util/sleep.ts';

/**
 * Lag of a warehouse consumer group measured where it matters: the offsets
 * committed in Postgres with the data, against the topics' high watermarks
 * (per partition: src/health/group-lag.ts). A topic that does not exist yet
 * is an error here, not a lag of 0.
 */
export async function groupLag(admin: Admin, pool: pg.Pool, schemas: WarehouseSchemas, group: string, topics: string[]): Promise<number> {
  const parts = await readPartitionLag(admin, await readStoredOffsets(pool, schemas, group), topics);
  const seen = new Set(parts.map((p) => p.topic));
  const missing = topics.filter((t) => !seen.has(t));
  if (missing.length > 0) throw new Error(`topics do not exist yet: ${missing.join(', ')}`);
  return Number(totalLag(parts));
}

/** Resolves once the group has applied everything currently in the topics; throws after `timeoutMs`. */
export async function waitCaughtUp(
  admin: Admin, pool: pg.Pool, schemas: WarehouseSchemas, group: string, topics: string[],
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let lag = -1;
  while (Date.now() < deadline && !opts.signal?.aborted) {
    lag = await groupLag(admin, pool, schemas, group, topics);
    if (lag === 0) return;
    await sleep(200, opts.signal);
  }
  throw new Error(`consumer group ${group} still ${lag} messages behind after ${opts.timeoutMs ?? 60_000} ms`);
}
