import type { Admin, Batch, Consumer } from 'kafkajs';
import type pg from 'pg';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { advanceStoredOffset, readPendingRewinds, readStoredOffsets } from '../sinks/postgres/consumer-progress.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';

/** What a consumer does when its stored offset is behind the log start (CONSUMER_ON_RETENTION_GAP). */
export type RetentionGapPolicy = 'stop' | 'continue';

/** Changes a group never applied and Kafka no longer holds. */
export interface RetentionGap {
  topic: string;
  partition: number;
  /** The group's stored next offset: the first change it has not applied. */
  storedOffset: string;
  /** The first offset the partition still holds: offsets storedOffset .. logStartOffset-1 are gone. */
  logStartOffset: string;
  /** Messages lost (logStartOffset - storedOffset). */
  lost: string;
  detectedAt: string;
  /** stop: the partition is paused, nothing past the gap is applied; continue: applied on (CONSUMER_ON_RETENTION_GAP=continue). */
  action: 'paused' | 'continued';
}

export interface StoredOffsetSeekerOptions {
  pool: pg.Pool;
  schemas: WarehouseSchemas;
  group: string;
  log: Logger;
  /** The group's kafkajs consumer once started (undefined before). */
  consumer: () => Consumer | undefined;
  /** An admin client for the log start offsets (only asked when a batch starts past the stored offset). */
  admin: () => Admin | undefined;
  /** Default stop: a gap pauses its partitions; the others keep being served. */
  onRetentionGap?: RetentionGapPolicy;
  /** Also warn on each seek back, not only when the gap is lost to retention (the warehouse group does, the clickstream group does not). */
  warnOnSeekBack?: boolean;
  /** How often to look for a rewind of the group's stored offsets (ms; default 1000). */
  rewindPollMs?: number;
}

/** The way back, in every gap report. */
export const RETENTION_GAP_REMEDY = 're-snapshot the source tables (npx shopstream snapshot <table>), then rebuild: npx shopstream replay --from-offset earliest (docs/operations.md, "Changes lost to retention")';

/**
 * The Kafka side of a group whose offsets live in Postgres
 * (`consumer_offsets`, committed with each batch's data): seek to them on
 * assignment, seek back once when a batch starts past them, follow a rewind
 * of them (`replay --rewind`), and never pass over changes retention
 * removed: such a partition is reported (`retentionGaps()`, an error log
 * line with code RETENTION_GAP) and paused unless the policy is `continue`.
 * Kafka's own committed offset only trails, for monitoring.
 */
export class StoredOffsetSeeker {
  /** Partitions already sent back to their stored offset once: a second batch past the same stored offset is a hole in the log. */
  private readonly seekTried = new Map<string, string>();
  /** `<stored>@<first>` of a batch that started past the stored offset after a seek to it: seen twice, it is a hole in the log. */
  private readonly holeSeen = new Map<string, string>();
  private readonly gaps = new Map<string, RetentionGap>();
  private readonly assigned = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(private readonly o: StoredOffsetSeekerOptions) {}

  /** The retention gaps found, one per partition (empty when healthy): for status, metrics and /readyz. */
  retentionGaps(): RetentionGap[] {
    return [...this.gaps.values()].map((g) => ({ ...g }));
  }

  /** False while a partition is paused on a retention gap. */
  get healthy(): boolean {
    return ![...this.gaps.values()].some((g) => g.action === 'paused');
  }

  /** On every assignment, seek the assigned partitions to their stored offsets; and watch for rewinds until stop(). */
  seekOnGroupJoin(consumer: Consumer): void {
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.assigned.clear();
      for (const [topic, partitions] of Object.entries(e.payload.memberAssignment)) for (const p of partitions) this.assigned.add(`${topic}/${p}`);
      this.seekTried.clear();
      this.holeSeen.clear();
      // Another member reports the partitions this one no longer holds.
      for (const k of this.gaps.keys()) if (!this.assigned.has(k)) this.gaps.delete(k);
      void this.seekToStored(e.payload.memberAssignment).catch((err) => this.o.log.error({ err: errorMessage(err) }, 'seek to stored offsets failed; the batch guard still applies'));
    });
    this.timer ??= setInterval(() => void this.followRewinds(), this.o.rewindPollMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Seeks the assigned partitions to their stored offsets; one behind its log start is a retention gap, found here before any batch arrives. */
  async seekToStored(assignment: Record<string, number[]>): Promise<void> {
    const stored = await readStoredOffsets(this.o.pool, this.o.schemas, this.o.group);
    for (const [topic, partitions] of Object.entries(assignment)) {
      const lows = new Map<number, bigint>();
      const admin = this.o.admin();
      if (admin && partitions.some((p) => stored.has(`${topic}/${p}`))) {
        for (const x of await admin.fetchTopicOffsets(topic)) lows.set(x.partition, BigInt(x.low));
      }
      for (const partition of partitions) {
        const offset = stored.get(`${topic}/${partition}`);
        if (offset === undefined) continue;
        const low = lows.get(partition);
        const behind = low !== undefined && BigInt(offset) < low;
        if (behind && await this.retentionGap(topic, partition, offset, low, null)) continue;
        // Behind and not paused: CONSUMER_ON_RETENTION_GAP=continue moved the stored offset to the log start.
        this.o.consumer()?.seek({ topic, partition, offset: behind ? low.toString() : offset });
      }
    }
  }

  /** A rewind moved stored offsets back: seek the partitions this member holds to them (once per rewound offset). */
  async followRewinds(): Promise<void> {
    if (this.polling || this.assigned.size === 0) return;
    this.polling = true;
    try {
      if (this.gaps.size > 0) await this.resumeRepaired();
      const pending = await readPendingRewinds(this.o.pool, this.o.schemas, this.o.group);
      for (const [key, offset] of pending) {
        if (!this.assigned.has(key) || this.seekTried.get(key) === offset) continue;
        const [topic, p] = splitKey(key);
        this.seekTried.set(key, offset);
        this.o.log.warn({ topic, partition: p, offset }, 'stored offset rewound; seeking back to re-apply from it');
        this.o.consumer()?.seek({ topic, partition: p, offset });
      }
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'looking for rewound offsets failed; retrying');
    } finally {
      this.polling = false;
    }
  }

  /**
   * Kafka ahead of Postgres (offsets reset or committed elsewhere, a rewind,
   * a hole the log compaction left, or retention): go back to the Postgres
   * position once instead of skipping. True when the batch must be dropped
   * (it seeked, or the partition is paused on a retention gap).
   */
  async gapBeforeBatch(batch: Batch): Promise<boolean> {
    const first = batch.firstOffset();
    if (first === null) return false;
    const key = `${batch.topic}/${batch.partition}`;
    const stored = (await readStoredOffsets(this.o.pool, this.o.schemas, this.o.group)).get(key);
    if (stored === undefined || BigInt(first) <= BigInt(stored)) return false;
    const logStart = await this.logStart(batch.topic, batch.partition);
    if (logStart !== undefined && BigInt(stored) < logStart) return this.retentionGap(batch.topic, batch.partition, stored, logStart, first);
    if (this.seekTried.get(key) === stored) {
      if (this.holeSeen.get(key) === `${stored}@${first}`) {
        // Seeked to the stored offset twice and Kafka served the same later
        // offset, above the log start: the offsets between hold nothing
        // (compacted away). Store the position past
        // them so the batch is contiguous. (Once is not enough: a batch
        // fetched before the seek, e.g. right after a rewind, also starts
        // past the stored offset, at a different offset each time.)
        await advanceStoredOffset(this.o.pool, this.o.schemas, this.o.group, batch.topic, batch.partition, stored, first);
        this.o.log.info({ topic: batch.topic, partition: batch.partition, stored, first }, 'no messages between the stored offset and the batch (compacted); going on from the batch');
        return false;
      }
      this.holeSeen.set(key, `${stored}@${first}`);
      this.o.consumer()?.seek({ topic: batch.topic, partition: batch.partition, offset: stored });
      return true;
    }
    this.seekTried.set(key, stored);
    if (this.o.warnOnSeekBack) this.o.log.warn({ topic: batch.topic, partition: batch.partition, stored, first }, 'batch starts after the stored offset; seeking back');
    this.o.consumer()?.seek({ topic: batch.topic, partition: batch.partition, offset: stored });
    return true;
  }

  /** A paused partition whose stored offset was moved to or past its log start (a rebuild handed over its offsets): resume it. */
  private async resumeRepaired(): Promise<void> {
    const stored = await readStoredOffsets(this.o.pool, this.o.schemas, this.o.group);
    for (const [key, gap] of this.gaps) {
      const s = stored.get(key);
      if (gap.action !== 'paused' || s === undefined || BigInt(s) < BigInt(gap.logStartOffset)) continue;
      this.gaps.delete(key);
      this.seekTried.delete(key);
      this.o.log.info({ topic: gap.topic, partition: gap.partition, storedOffset: s }, 'retention gap repaired (stored offset at or past the log start); resuming the partition');
      this.o.consumer()?.seek({ topic: gap.topic, partition: gap.partition, offset: s });
      this.o.consumer()?.resume([{ topic: gap.topic, partitions: [gap.partition] }]);
    }
  }

  /** Records and reports a gap; true when the partition is paused (or re-sought) and nothing of it may be applied now. `first`: the batch's first offset, null on assignment. */
  private async retentionGap(topic: string, partition: number, stored: string, logStart: bigint, first: string | null): Promise<boolean> {
    const key = `${topic}/${partition}`;
    const policy = this.o.onRetentionGap ?? 'stop';
    const gap: RetentionGap = {
      topic, partition, storedOffset: stored, logStartOffset: logStart.toString(),
      lost: (logStart - BigInt(stored)).toString(), detectedAt: new Date().toISOString(), action: policy === 'stop' ? 'paused' : 'continued',
    };
    const known = this.gaps.get(key);
    const same = known !== undefined && known.storedOffset === stored;
    this.gaps.set(key, same ? { ...gap, detectedAt: known.detectedAt } : gap);
    const fields = { code: 'RETENTION_GAP', group: this.o.group, topic, partition, storedOffset: stored, logStartOffset: gap.logStartOffset, lost: gap.lost, remedy: RETENTION_GAP_REMEDY };
    if (policy === 'continue') {
      this.o.log.error({ ...fields, policy }, 'changes between the stored offset and the log start are gone (retention); CONSUMER_ON_RETENTION_GAP=continue: applying on from the log start, the tables miss them');
      // The skip is explicit and stored: the batch guard then applies from the log start.
      await advanceStoredOffset(this.o.pool, this.o.schemas, this.o.group, topic, partition, stored, logStart.toString());
      if (first !== null && BigInt(first) > logStart) {
        this.o.consumer()?.seek({ topic, partition, offset: logStart.toString() });
        return true;
      }
      return false;
    }
    if (!same) {
      this.o.log.error({ ...fields, policy }, 'changes between the stored offset and the log start are gone (retention); partition paused, nothing past the gap is applied (CONSUMER_ON_RETENTION_GAP=continue to apply on anyway)');
    }
    this.o.consumer()?.pause([{ topic, partitions: [partition] }]);
    return true;
  }

  private async logStart(topic: string, partition: number): Promise<bigint | undefined> {
    const admin = this.o.admin();
    if (!admin) return undefined;
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      const p = offsets.find((x) => x.partition === partition);
      return p ? BigInt(p.low) : undefined;
    } catch (err) {
      this.o.log.warn({ topic, partition, err: errorMessage(err) }, 'reading the log start offset failed');
      throw err;
    }
  }
}

function splitKey(key: string): [string, number] {
  const i = key.lastIndexOf('/');
  return [key.slice(0, i), Number(key.slice(i + 1))];
}

/**
 * The retention gaps of a group without a running member: every partition
 * whose stored offset is below its log start. For `status` and the replay
 * command, which refuses to rewind or rebuild over them.
 */
export async function findRetentionGaps(admin: Admin, pool: pg.Pool | pg.ClientBase, schemas: WarehouseSchemas, group: string, topics: string[]): Promise<Array<Omit<RetentionGap, 'detectedAt' | 'action'>>> {
  const stored = await readStoredOffsets(pool, schemas, group);
  const out: Array<Omit<RetentionGap, 'detectedAt' | 'action'>> = [];
  for (const topic of topics) {
    for (const p of await admin.fetchTopicOffsets(topic)) {
      const s = stored.get(`${topic}/${p.partition}`);
      if (s !== undefined && BigInt(s) < BigInt(p.low)) {
        out.push({ topic, partition: p.partition, storedOffset: s, logStartOffset: p.low, lost: (BigInt(p.low) - BigInt(s)).toString() });
      }
    }
  }
  return out;
}
