import type pg from 'pg';
import { quoted, type WarehouseSchemas } from './pool.ts';

/**
 * A consumer group's position as Postgres holds it (`consumer_offsets`)
 * and the dead-letter notes that go with it, shared by every group whose
 * batches commit their offset in the same transaction as their data
 * (batch-tx.ts, which the warehouse's apply.ts runs in, and the clickstream's apply.ts).
 */
export interface DeadLetterNote {
  offset: string;
  dlqTopic: string;
  error: string;
  /** Set when the record was too large for the DLQ topic: it is kept here instead (migration 0006). */
  kept?: { key: Buffer | null; value: Buffer | null; headers: Record<string, string> };
}

export interface PartitionProgress {
  group: string;
  topic: string;
  partition: number;
  /** The offset stored for the partition after the batch (last offset + 1). */
  nextOffset: string;
  deadLetters: DeadLetterNote[];
}

export async function readStoredOffsets(client: pg.Pool | pg.ClientBase, schemas: WarehouseSchemas, group: string): Promise<Map<string, string>> {
  const { meta } = quoted(schemas);
  const { rows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    `SELECT topic, partition, next_offset FROM ${meta}.consumer_offsets WHERE consumer_group = $1`, [group]);
  return new Map(rows.map((r) => [`${r.topic}/${r.partition}`, r.next_offset]));
}

/** One partition's stored next offset, or -1 when the group has stored none for it yet. */
export async function readStoredOffset(client: pg.ClientBase, schemas: WarehouseSchemas, group: string, topic: string, partition: number): Promise<bigint> {
  const { meta } = quoted(schemas);
  const { rows } = await client.query<{ next_offset: string }>(
    `SELECT next_offset FROM ${meta}.consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3`,
    [group, topic, partition]);
  return rows[0] ? BigInt(rows[0].next_offset) : -1n;
}

/**
 * The end of a batch's transaction: dead-letter notes for the offsets this
 * transaction applies (`freshOffsets`; notes for offsets an earlier
 * transaction already stored are left out) and the partition's next offset.
 */
export async function recordBatchProgress(client: pg.ClientBase, schemas: WarehouseSchemas, p: PartitionProgress, freshOffsets: ReadonlySet<string>): Promise<void> {
  await recordProgress(client, schemas, [{ progress: p, freshOffsets }]);
}

/** recordBatchProgress for the partitions of one transaction, in one statement each for notes and offsets. */
export async function recordProgress(
  client: pg.ClientBase, schemas: WarehouseSchemas, parts: ReadonlyArray<{ progress: PartitionProgress; freshOffsets: ReadonlySet<string> }>,
): Promise<void> {
  if (parts.length === 0) return;
  const { meta } = quoted(schemas);
  const dead = parts.flatMap(({ progress: p, freshOffsets }) => p.deadLetters.filter((d) => freshOffsets.has(d.offset))
    .map((d) => ({
      g: p.group, t: p.topic, p: p.partition, off: d.offset, dlq: d.dlqTopic, err: d.error,
      kept: d.kept !== undefined, k: d.kept?.key?.toString('hex') ?? null, v: d.kept?.value?.toString('hex') ?? null, h: d.kept?.headers ?? null,
    })));
  if (dead.length > 0) {
    await client.query(
      `INSERT INTO ${meta}.dead_letters (consumer_group, topic, partition, "offset", dlq_topic, error, kept_in_table, message_key, message_value, message_headers)
       SELECT d.g, d.t, d.p, d.off, d.dlq, d.err, d.kept, decode(d.k, 'hex'), decode(d.v, 'hex'), d.h
         FROM jsonb_to_recordset($1::jsonb) AS d(g text, t text, p int, off bigint, dlq text, err text, kept boolean, k text, v text, h jsonb)
       ON CONFLICT DO NOTHING`,
      [JSON.stringify(dead)]);
  }
  // A batch that starts past a pending rewind was fetched before it: its
  // changes may apply (every effect is idempotent), its offset may not
  // overwrite the rewound one (docs/operations.md, "Rewind").
  const first = parts.map(({ progress: p, freshOffsets }) => {
    let min: bigint | undefined;
    for (const o of freshOffsets) if (min === undefined || BigInt(o) < min) min = BigInt(o);
    return (min ?? BigInt(p.nextOffset)).toString();
  });
  await client.query(
    `INSERT INTO ${meta}.consumer_offsets (consumer_group, topic, partition, next_offset)
     SELECT p.g, p.t, p.p, p.n FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS p(g, t, p, n, f)
     WHERE NOT EXISTS (SELECT 1 FROM ${meta}.consumer_offsets o WHERE o.consumer_group = p.g AND o.topic = p.t AND o.partition = p.p
                         AND o.rewind_pending AND p.f > o.next_offset)
     ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, rewind_pending = false, updated_at = now()`,
    [parts.map((x) => x.progress.group), parts.map((x) => x.progress.topic), parts.map((x) => x.progress.partition), parts.map((x) => x.progress.nextOffset), first]);
}

/** Partitions of a group with a rewind its members have not acted on yet. */
export async function readPendingRewinds(client: pg.Pool | pg.ClientBase, schemas: WarehouseSchemas, group: string): Promise<Map<string, string>> {
  const { meta } = quoted(schemas);
  const { rows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    `SELECT topic, partition, next_offset FROM ${meta}.consumer_offsets WHERE consumer_group = $1 AND rewind_pending`, [group]);
  return new Map(rows.map((r) => [`${r.topic}/${r.partition}`, r.next_offset]));
}

/**
 * Moves a partition's stored offset from `from` to `to` when it still is
 * `from` (a compacted hole, or a retention gap accepted by
 * CONSUMER_ON_RETENTION_GAP=continue); true when it moved.
 */
export async function advanceStoredOffset(client: pg.Pool | pg.ClientBase, schemas: WarehouseSchemas, group: string, topic: string, partition: number, from: string, to: string): Promise<boolean> {
  const { meta } = quoted(schemas);
  const r = await client.query(
    `UPDATE ${meta}.consumer_offsets SET next_offset = $5, rewind_pending = false, updated_at = now()
     WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $4`, [group, topic, partition, from, to]);
  return (r.rowCount ?? 0) > 0;
}
