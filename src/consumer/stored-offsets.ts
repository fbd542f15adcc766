import type { Batch, Consumer } from 'kafkajs';
import type pg from 'pg';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { readStoredOffsets } from '../sinks/postgres/consumer-progress.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';

export interface StoredOffsetSeekerOptions {
  pool: pg.Pool;
  schemas: WarehouseSchemas;
  group: string;
  log: Logger;
  /** The group's kafkajs consumer once started (undefined before). */
  consumer: () => Consumer | undefined;
  /** Also warn on each seek back, not only when the gap is lost to retention (the warehouse group does, the clickstream group does not). */
  warnOnSeekBack?: boolean;
}

/**
 * The Kafka side of a group whose offsets live in Postgres
 * (`consumer_offsets`, committed with each batch's data): seek to them on
 * assignment, and seek back once when a batch starts past them. Kafka's own
 * committed offset only trails, for monitoring.
 */
export class StoredOffsetSeeker {
  /** Partitions already sent back to their stored offset once; a second gap means retention removed the data. */
  private readonly seekTried = new Map<string, string>();

  constructor(private readonly o: StoredOffsetSeekerOptions) {}

  /** On every assignment, seek the assigned partitions to their stored offsets. */
  seekOnGroupJoin(consumer: Consumer): void {
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      void this.seekToStored(e.payload.memberAssignment).catch((err) => this.o.log.error({ err: errorMessage(err) }, 'seek to stored offsets failed; the batch guard still applies'));
    });
  }

  async seekToStored(assignment: Record<string, number[]>): Promise<void> {
    const stored = await readStoredOffsets(this.o.pool, this.o.schemas, this.o.group);
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const offset = stored.get(`${topic}/${partition}`);
        if (offset !== undefined) this.o.consumer()?.seek({ topic, partition, offset });
      }
    }
  }

  /**
   * Kafka ahead of Postgres (offsets reset or committed elsewhere): go back
   * to the Postgres position once instead of skipping. True when it seeked
   * and the batch must be dropped.
   */
  async gapBeforeBatch(batch: Batch): Promise<boolean> {
    const first = batch.firstOffset();
    if (first === null) return false;
    const key = `${batch.topic}/${batch.partition}`;
    const stored = (await readStoredOffsets(this.o.pool, this.o.schemas, this.o.group)).get(key);
    if (stored === undefined || BigInt(first) <= BigInt(stored)) return false;
    if (this.seekTried.get(key) === stored) {
      this.o.log.error({ topic: batch.topic, partition: batch.partition, stored, first }, 'messages between the stored offset and the log start are gone (retention); continuing');
      return false;
    }
    this.seekTried.set(key, stored);
    if (this.o.warnOnSeekBack) this.o.log.warn({ topic: batch.topic, partition: batch.partition, stored, first }, 'batch starts after the stored offset; seeking back');
    this.o.consumer()?.seek({ topic: batch.topic, partition: batch.partition, offset: stored });
    return true;
  }
}
