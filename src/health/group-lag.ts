import type { Admin } from 'kafkajs';

/** One partition of a group whose offsets live in Postgres (`consumer_offsets`), against Kafka's watermarks. */
export interface PartitionLag {
  topic: string;
  partition: number;
  /** The group's stored next offset, or null when it has stored none for the partition. */
  stored: bigint | null;
  low: bigint;
  high: bigint;
  /** Messages not yet applied: high watermark − stored offset (− log start when none is stored). */
  lag: bigint;
}

/**
 * Lag per partition measured where it matters: the offsets committed in
 * Postgres with the data (Kafka's own committed offset only trails). Topics
 * that do not exist yet are left out (the capture creates a table's topic
 * with its first event).
 */
export async function readPartitionLag(admin: Admin, stored: ReadonlyMap<string, string>, topics: readonly string[]): Promise<PartitionLag[]> {
  const existing = new Set(await admin.listTopics());
  const out: PartitionLag[] = [];
  for (const topic of topics) {
    if (!existing.has(topic)) continue;
    for (const p of await admin.fetchTopicOffsets(topic)) {
      const s = stored.get(`${topic}/${p.partition}`);
      const storedN = s === undefined ? null : BigInt(s);
      const low = BigInt(p.low);
      const high = BigInt(p.high);
      const done = storedN ?? low;
      out.push({ topic, partition: p.partition, stored: storedN, low, high, lag: high > done ? high - done : 0n });
    }
  }
  return out;
}

/** Sum of the lags. */
export function totalLag(parts: readonly PartitionLag[]): bigint {
  return parts.reduce((n, p) => n + p.lag, 0n);
}
