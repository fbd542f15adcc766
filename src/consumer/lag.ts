import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { readStoredOffsets } from '../sinks/postgres/batch-tx.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { sleep } from '../util/sleep.ts';

/**
 * Lag of a warehouse consumer group measured where it matters: the offsets
 * committed in Postgres with the data, against the topics' high watermarks.
 */
export async function groupLag(admin: Admin, pool: pg.Pool, schemas: WarehouseSchemas, group: string, topics: string[]): Promise<number> {
  const stored = await readStoredOffsets(pool, schemas, group);
  let lag = 0;
  for (const topic of topics) {
    for (const p of await admin.fetchTopicOffsets(topic)) {
      const done = BigInt(stored.get(`${topic}/${p.partition}`) ?? p.low);
      const high = BigInt(p.high);
      if (high > done) lag += Number(high - done);
    }
  }
  return lag;
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
