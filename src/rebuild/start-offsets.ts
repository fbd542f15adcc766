import type { Admin } from 'kafkajs';

/**
 * Where a replay starts and where "caught up" is, per topic-partition.
 * End offsets are the high watermarks when the replay starts: the progress
 * total. The swap itself waits for the live group's position, not these.
 */
export type ReplayFrom = { kind: 'earliest' } | { kind: 'offset'; offset: bigint } | { kind: 'timestamp'; ms: number };

export interface PartitionRange {
  topic: string;
  partition: number;
  /** First retained offset. */
  low: bigint;
  start: bigint;
  end: bigint;
  /** The requested offset was below the log start and `clampToLogStart` moved it there. */
  clamped?: boolean;
}

export const tpKey = (topic: string, partition: number) => `${topic}/${partition}`;

/**
 * `clampToLogStart`: an offset below the log start starts at the log start
 * (a rewind: what was before it was applied already) instead of being
 * refused (a rebuild: it would silently lack that data).
 */
export async function resolveRanges(admin: Admin, topics: string[], from: ReplayFrom, opts: { clampToLogStart?: boolean } = {}): Promise<PartitionRange[]> {
  const out: PartitionRange[] = [];
  for (const topic of topics) {
    const ends = await admin.fetchTopicOffsets(topic);
    const byTime = from.kind === 'timestamp' ? await admin.fetchTopicOffsetsByTimestamp(topic, from.ms) : [];
    for (const p of ends) {
      const low = BigInt(p.low);
      const end = BigInt(p.high);
      let start: bigint;
      let clamped = false;
      if (from.kind === 'earliest') start = low;
      else if (from.kind === 'offset') {
        // Offsets below the log start are gone: replaying "from" them would silently skip data.
        if (from.offset < low && !opts.clampToLogStart) throw new Error(`offset ${from.offset} is before the first retained offset ${low} of ${topic}/${p.partition}`);
        clamped = from.offset < low;
        start = clamped ? low : from.offset > end ? end : from.offset;
      } else {
        // -1: no message at or after the timestamp; nothing to replay there.
        const t = byTime.find((x) => x.partition === p.partition);
        start = t && BigInt(t.offset) >= 0n ? BigInt(t.offset) : end;
        if (start < low) start = low;
      }
      out.push({ topic, partition: p.partition, low, start, end, ...(clamped ? { clamped } : {}) });
    }
  }
  return out;
}

/** Messages between start and what has been applied (capped at end), and the total to apply. */
export function replayedCount(ranges: PartitionRange[], applied: Map<string, string>): { done: number; total: number; caughtUp: boolean } {
  let done = 0n;
  let total = 0n;
  let caughtUp = true;
  for (const r of ranges) {
    const at = BigInt(applied.get(tpKey(r.topic, r.partition)) ?? r.start);
    const capped = at > r.end ? r.end : at < r.start ? r.start : at;
    done += capped - r.start;
    total += r.end - r.start;
    if (at < r.end) caughtUp = false;
  }
  return { done: Number(done), total: Number(total), caughtUp };
}

/** True when the rebuild has applied at least as far as the live group on every partition the live group has stored. */
export function covers(rebuilt: Map<string, string>, live: Map<string, string>): boolean {
  for (const [tp, off] of live) {
    const r = rebuilt.get(tp);
    if (r === undefined || BigInt(r) < BigInt(off)) return false;
  }
  return true;
}
