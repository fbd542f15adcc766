import type pg from 'pg';
import type { RowChange } from '../../consumer/envelope.ts';
import type { ClvThresholds } from './derived-sql.ts';
import { readStoredOffset, recordBatchProgress, type DeadLetterNote } from './consumer-progress.ts';
import { quoted, type WarehouseSchemas } from './pool.ts';
import { captureBefore, directKeys, recomputeAffected } from './recompute.ts';
import { applyStaging, expandTruncate } from './staging-apply.ts';

// Kept importable from here: the rebuild, the lag probe and tests read offsets through this module.
export { readStoredOffsets, type DeadLetterNote } from './consumer-progress.ts';

/**
 * One Kafka batch (one topic-partition) as one Postgres transaction:
 * staging, history, derived tables, the partition's next offset and the
 * Redis outbox commit together, so a crash leaves all or nothing and a
 * restart resumes exactly after the last committed batch.
 */
export interface BatchMessage {
  offset: string;
  /** null for tombstones and dead-lettered messages: they only advance the offset. */
  change: RowChange | null;
}

export interface BatchInput {
  group: string;
  topic: string;
  partition: number;
  messages: BatchMessage[];
  deadLetters: DeadLetterNote[];
}

export interface BatchOptions {
  redisKeyPrefix: string;
  thresholds?: ClvThresholds;
  /**
   * Apply staging, history and offsets only, leaving the derived tables to
   * one `fullRefresh` once caught up: how a replay from offset 0 rebuilds
   * in about the time of a batch full refresh instead of key by key.
   */
  deferDerived?: boolean;
}

export interface BatchOutcome {
  /** The offset stored for the partition after the batch (last offset + 1). */
  nextOffset: string;
  applied: number;
  skippedAsApplied: number;
}

/** Batches of one warehouse namespace serialise on this lock, so two processes can never recompute a key from each other's half-applied staging. */
export function namespaceLockSql(schemas: WarehouseSchemas): { sql: string; params: string[] } {
  return { sql: 'SELECT pg_advisory_xact_lock(hashtext($1))', params: [`cdc-warehouse:${schemas.staging}/${schemas.analytics}`] };
}

/** Splits at truncates: a truncate removes what staging holds at its point in the stream, so it is applied between the runs around it. */
function segments(changes: RowChange[]): RowChange[][] {
  const out: RowChange[][] = [[]];
  for (const ch of changes) {
    if (ch.op === 't') out.push([ch], []);
    else out[out.length - 1]!.push(ch);
  }
  return out.filter((s) => s.length > 0);
}

export async function applyBatch(pool: pg.Pool, schemas: WarehouseSchemas, input: BatchInput, opts: BatchOptions): Promise<BatchOutcome> {
  quoted(schemas); // refuses bad schema names before a connection is taken
  const last = input.messages[input.messages.length - 1];
  if (!last) throw new Error('empty batch');
  const nextOffset = (BigInt(last.offset) + 1n).toString();
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const lock = namespaceLockSql(schemas);
    await client.query(lock.sql, lock.params);
    // Second guard after the seek on assignment: drop what an earlier
    // transaction already applied (a redelivery after a crash between the
    // Postgres commit and the Kafka commit).
    const stored = await readStoredOffset(client, schemas, input.group, input.topic, input.partition);
    const fresh = input.messages.filter((m) => BigInt(m.offset) >= stored);
    if (fresh.length === 0) {
      await client.query('ROLLBACK');
      return { nextOffset: stored.toString(), applied: 0, skippedAsApplied: input.messages.length };
    }
    const changes = fresh.flatMap((m) => (m.change ? [m.change] : []));
    for (const seg of segments(changes)) {
      const run = seg[0]!.op === 't' ? await expandTruncate(client, schemas, seg[0]!) : seg;
      if (run.length === 0) continue;
      if (opts.deferDerived) {
        await applyStaging(client, schemas, run);
        continue;
      }
      const keys = directKeys(run);
      const pre = await captureBefore(client, schemas, keys);
      await applyStaging(client, schemas, run);
      await recomputeAffected(client, schemas, keys, pre, opts);
    }
    await recordBatchProgress(client, schemas, { ...input, nextOffset }, new Set(fresh.map((m) => m.offset)));
    await client.query('COMMIT');
    return { nextOffset, applied: changes.length, skippedAsApplied: input.messages.length - fresh.length };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
