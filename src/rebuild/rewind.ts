import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { findRetentionGaps } from '../consumer/stored-offsets.ts';
import { ReplayRefusedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { readStoredOffsets } from '../sinks/postgres/consumer-progress.ts';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { tpKey } from './start-offsets.ts';

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
export type RewindTo = { kind: 'earliest' } | { kind: 'offset'; offset: bigint } | { kind: 'timestamp'; ms: number };

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

async function targets(admin: Admin, topics: string[], to: RewindTo) {
  const out: Array<{ topic: string; partition: number; low: bigint; high: bigint; target: bigint; clamped: boolean }> = [];
  for (const topic of topics) {
    const ends = await admin.fetchTopicOffsets(topic);
    const byTime = to.kind === 'timestamp' ? await admin.fetchTopicOffsetsByTimestamp(topic, to.ms) : [];
    for (const p of ends) {
      const low = BigInt(p.low);
      const high = BigInt(p.high);
      let target: bigint;
      if (to.kind === 'earliest') target = low;
      else if (to.kind === 'offset') target = to.offset > high ? high : to.offset;
      else {
        // -1: nothing at or after the time, so nothing to re-apply there.
        const t = byTime.find((x) => x.partition === p.partition);
        target = t && BigInt(t.offset) >= 0n ? BigInt(t.offset) : high;
      }
      const clamped = target < low;
      out.push({ topic, partition: p.partition, low, high, target: clamped ? low : target, clamped });
    }
  }
  return out;
}

export async function rewindGroup(o: RewindOptions): Promise<RewindResult> {
  const { meta } = quoted(o.schemas);
  const gaps = await findRetentionGaps(o.admin, o.pool, o.schemas, o.group, o.topics);
  if (gaps.length > 0) {
    const g = gaps[0]!;
    throw new ReplayRefusedError(`group ${o.group} has changes lost to retention on ${gaps.length} partition(s) (e.g. ${tpKey(g.topic, g.partition)}: stored offset ${g.storedOffset}, log start ${g.logStartOffset}); ` +
      'a rewind would pass over them: re-snapshot, then rebuild (npm run replay -- --from-offset earliest)');
  }
  const want = await targets(o.admin, o.topics, o.to);
  const client = await o.pool.connect();
  try {
    await client.query('BEGIN');
    for (const k of [...o.lockKeys].sort()) await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [k]);
    const stored = await readStoredOffsets(client, o.schemas, o.group);
    const result: RewindResult = { moved: [], unchanged: [], messages: 0 };
    for (const w of want) {
      const s = stored.get(tpKey(w.topic, w.partition));
      if (s !== undefined && BigInt(s) <= w.target) {
        result.unchanged.push({ topic: w.topic, partition: w.partition, stored: s, target: w.target.toString() });
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
