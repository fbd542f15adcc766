import type pg from 'pg';
import type { RowChange } from '../../consumer/envelope.ts';
import { readStoredOffsets, recordProgress, type DeadLetterNote } from './consumer-progress.ts';
import type { OutboxRow } from '../redis/clv-redis.ts';
import { quoted, type WarehouseSchemas } from './pool.ts';
import type { StageTimer } from '../../consumer/stage-timer.ts';

// Kept importable from here: the rebuild, the lag probe and tests read offsets through this module.
export { readStoredOffsets, type DeadLetterNote } from './consumer-progress.ts';

/**
 * Kafka batches (one or more topic-partitions) as one Postgres transaction:
 * staging, history, derived tables, each partition's next offset and the
 * Redis outbox commit together, so a crash leaves all or nothing and a
 * restart resumes exactly after the last committed batch. Batches of
 * several topics go into one transaction when they arrive together (the
 * consumer's group commit): an order and its lines, which come on two
 * topics, then cost one recomputation instead of two. What the changes do
 * inside the transaction is the group's own (`ApplyChanges`; the
 * warehouse's is consumers/warehouse/apply.ts).
 */
export interface BatchMessage {
  offset: string;
  /** null for tombstones and dead-lettered messages: they only advance the offset. */
  change: RowChange | null;
}

export interface PartitionBatch {
  topic: string;
  partition: number;
  messages: BatchMessage[];
  deadLetters: DeadLetterNote[];
}

export interface BatchInput extends PartitionBatch {
  group: string;
}

/**
 * A group's work on the fresh changes of a transaction (those no earlier
 * transaction stored an offset past), in stream order; returns the Redis
 * outbox rows it wrote. `lap` times its steps (src/consumer/stage-timer.ts).
 */
export type ApplyChanges = (client: pg.PoolClient, changes: RowChange[], lap: (stage: string) => void) => Promise<OutboxRow[]>;

export interface BatchOutcome {
  /** The offset stored for the partition after the batch (last offset + 1). */
  nextOffset: string;
  applied: number;
  skippedAsApplied: number;
}

export interface BatchesOutcome {
  /** One per input partition batch, in input order. */
  parts: BatchOutcome[];
  /** The outbox rows the transaction wrote: what Redis should now show (ClvRedisSink.publish). */
  outbox: OutboxRow[];
}

/** Batches of one warehouse namespace serialise on this lock, so two processes can never recompute a key from each other's half-applied staging. */
export function namespaceLockSql(schemas: WarehouseSchemas): { sql: string; params: string[] } {
  return { sql: 'SELECT pg_advisory_xact_lock(hashtext($1))', params: [`cdc-warehouse:${schemas.staging}/${schemas.analytics}`] };
}

export async function runBatchTransaction(pool: pg.Pool, schemas: WarehouseSchemas, group: string, parts: PartitionBatch[], apply: ApplyChanges, timer?: StageTimer): Promise<BatchesOutcome> {
  quoted(schemas); // refuses bad schema names before a connection is taken
  if (parts.length === 0 || parts.some((p) => p.messages.length === 0)) throw new Error('empty batch');
  const seen = new Set(parts.map((p) => `${p.topic}/${p.partition}`));
  if (seen.size !== parts.length) throw new Error('two batches of one partition in one transaction');
  const lap = timer?.laps() ?? (() => {});
  const client = await pool.connect();
  lap('tx.connect');
  try {
    // One round trip: the lock key is made of checked identifiers only (quoted()), so it can be a literal.
    await client.query(`BEGIN; SELECT pg_advisory_xact_lock(hashtext('${namespaceLockSql(schemas).params[0]}'))`);
    lap('tx.lock');
    // Second guard after the seek on assignment: drop what an earlier
    // transaction already applied (a redelivery after a crash between the
    // Postgres commit and the Kafka commit).
    const stored = await readStoredOffsets(client, schemas, group);
    const fresh = parts.map((p) => {
      const from = BigInt(stored.get(`${p.topic}/${p.partition}`) ?? -1);
      return p.messages.filter((m) => BigInt(m.offset) >= from);
    });
    const outcomes: BatchOutcome[] = parts.map((p, i) => {
      const last = p.messages[p.messages.length - 1]!;
      const f = fresh[i]!;
      const applied = f.reduce((n, m) => n + (m.change ? 1 : 0), 0);
      return f.length === 0
        ? { nextOffset: String(stored.get(`${p.topic}/${p.partition}`)), applied: 0, skippedAsApplied: p.messages.length }
        : { nextOffset: (BigInt(last.offset) + 1n).toString(), applied, skippedAsApplied: p.messages.length - f.length };
    });
    if (fresh.every((f) => f.length === 0)) {
      await client.query('ROLLBACK');
      return { parts: outcomes, outbox: [] };
    }
    lap('tx.offsetRead');
    const changes = fresh.flatMap((f) => f.flatMap((m) => (m.change ? [m.change] : [])));
    const outbox = await apply(client, changes, lap);
    await recordProgress(client, schemas, parts.flatMap((p, i) => fresh[i]!.length === 0 ? [] : [{
      progress: { group, ...p, nextOffset: outcomes[i]!.nextOffset }, freshOffsets: new Set(fresh[i]!.map((m) => m.offset)),
    }]));
    lap('tx.progress');
    await client.query('COMMIT');
    lap('tx.commit');
    return { parts: outcomes, outbox };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
