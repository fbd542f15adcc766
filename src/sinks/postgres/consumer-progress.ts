import type pg from 'pg';
import { quoted, type WarehouseSchemas } from './pool.ts';

/**
 * A consumer group's position as Postgres holds it (`consumer_offsets`)
 * and the dead-letter notes that go with it, shared by every group whose
 * batches commit their offset in the same transaction as their data
 * (the warehouse's batch-tx.ts, the clickstream's apply.ts).
 */
export interface DeadLetterNote {
  offset: string;
  dlqTopic: string;
  error: string;
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
  const { meta } = quoted(schemas);
  const dead = p.deadLetters.filter((d) => freshOffsets.has(d.offset));
  if (dead.length > 0) {
    await client.query(
      `INSERT INTO ${meta}.dead_letters (consumer_group, topic, partition, "offset", dlq_topic, error)
       SELECT $1, $2, $3, d.off, d.dlq, d.err FROM jsonb_to_recordset($4::jsonb) AS d(off bigint, dlq text, err text)
       ON CONFLICT DO NOTHING`,
      [p.group, p.topic, p.partition, JSON.stringify(dead.map((d) => ({ off: d.offset, dlq: d.dlqTopic, err: d.error })))]);
  }
  await client.query(
    `INSERT INTO ${meta}.consumer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
     ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
    [p.group, p.topic, p.partition, p.nextOffset]);
}
