import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { findRetentionGaps } from '../consumer/stored-offsets.ts';
import { ReplayRefusedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { readStoredOffsets } from '../sinks/postgres/consumer-progress.ts';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { replayGuardKey } from './replay.ts';
import { resolveRanges, tpKey, type ReplayFrom } from './start-offsets.ts';

/**
 * Rewind: move a consumer group back to an earlier offset or time so that
 * it re-applies every change since then onto the live tables
 * (docs/operations.md, "Rewind"). What `kafka-consumer-groups
 * --reset-offsets` does to a Kafka group, done to the offsets our groups
 * read (cdc_meta.consumer_offsets), because a reset on the Kafka side alone
 * is not seen: the groups seek to their Postgres offsets.
 *
 * Safe on a running group: the move commits under the namespace locks every
 * batch takes, and sets `rewind_pending`, so a batch fetched before the
 * rewind cannot store its offset over the rewound one (its changes may
 * still apply: every effect is idempotent); members poll for the flag and
 * seek. Offsets only move back: a target after a partition's stored offset
 * leaves it alone (moving forward would skip changes). A partition whose
 * stored offset is already behind the log start (changes lost to retention)
 * is refused: rewinding it would pass over the gap.
 */
export type RewindTo = ReplayFrom;

export interface RewindMove {
  topic: string;
  partition: number;
  /** The stored offset before; null when the group had none for the partition. */
  from: string | null;
  to: string;
  /** The requested offset was before the log start; the rewind starts at the log start. */
  clampedToLogStart?: boolean;
}

export interface RewindResult {
  moved: RewindMove[];
  /** Partitions left where they are: the target is not before their stored offset. */
  unchanged: Array<{ topic: string; partition: number; stored: string | null; target: string }>;
  /** Messages the group will apply again. */
  messages: number;
}

export interface RewindOptions {
  pool: pg.Pool;
  admin: Admin;
  schemas: WarehouseSchemas;
  group: string;
  topics: string[];
  to: RewindTo;
  /** Advisory lock keys the group's batches take (the warehouse and clickstream namespace locks). */
  lockKeys: string[];
  log: Logger;
  dryRun?: boolean;
}

export async function rewindGroup(o: RewindOptions): Promise<RewindResult> {
  const { meta } = quoted(o.schemas);
  const gaps = await findRetentionGaps(o.admin, o.pool, o.schemas, o.group, o.topics);
  if (gaps.length > 0) {
    const g = gaps[0]!;
    throw new ReplayRefusedError(`group ${o.group} has changes lost to retention on ${gaps.length} partition(s) (e.g. ${tpKey(g.topic, g.partition)}: stored offset ${g.storedOffset}, log start ${g.logStartOffset}); ` +
      'a rewind would pass over them: re-snapshot, then rebuild (npm run replay -- --from-offset earliest)');
  }
  const want = (await resolveRanges(o.admin, o.topics, o.to, { clampToLogStart: true })).map((r) => ({ ...r, target: r.start, high: r.end }));
  const client = await o.pool.connect();
  try {
    await client.query('BEGIN');
    // A rebuild hands its own offsets over at the swap: a rewind beside it would be undone, or undo it.
    const { rows: free } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok', [replayGuardKey(o.schemas)]);
    if (!free[0]?.ok) throw new ReplayRefusedError(`a rebuild of ${o.schemas.staging}/${o.schemas.analytics} is running; rewind after it has swapped in`);
    for (const k of [...o.lockKeys].sort()) await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [k]);
    const stored = await readStoredOffsets(client, o.schemas, o.group);
    const result: RewindResult = { moved: [], unchanged: [], messages: 0 };
    for (const w of want) {
      const s = stored.get(tpKey(w.topic, w.partition));
      // Nothing to re-apply: stored at or before the target, or never stored and nothing from the target on
      // (an empty partition; marked pending, it would stay pending for want of a batch to clear it).
      if (s !== undefined ? BigInt(s) <= w.target : w.target >= w.high) {
        result.unchanged.push({ topic: w.topic, partition: w.partition, stored: s ?? null, target: w.target.toString() });
        continue;
      }
      result.moved.push({ topic: w.topic, partition: w.partition, from: s ?? null, to: w.target.toString(), ...(w.clamped ? { clampedToLogStart: true } : {}) });
      result.messages += Number((s === undefined ? w.high : BigInt(s)) - w.target);
    }
    if (!o.dryRun && result.moved.length > 0) {
      await client.query(
        `INSERT INTO ${meta}.consumer_offsets (consumer_group, topic, partition, next_offset, rewind_pending)
         SELECT $1, m.topic, m.partition, m.to, true FROM jsonb_to_recordset($2::jsonb) AS m(topic text, partition int, "to" bigint)
         ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, rewind_pending = true, updated_at = now()`,
        [o.group, JSON.stringify(result.moved.map((m) => ({ topic: m.topic, partition: m.partition, to: m.to })))]);
    }
    await client.query(o.dryRun ? 'ROLLBACK' : 'COMMIT');
    o.log.info({ group: o.group, moved: result.moved.length, unchanged: result.unchanged.length, messages: result.messages, dryRun: !!o.dryRun }, 'rewind: stored offsets moved back');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
