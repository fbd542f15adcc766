import type { Consumer } from 'kafkajs';
import type { Logger } from '../logger.ts';
import type { ClvRedisSink, OutboxRow } from '../sinks/redis/clv-redis.ts';
import type { StageTimer } from './stage-timer.ts';

/**
 * Owns "acknowledge only what is durable downstream". The order is fixed:
 * 1. the Postgres transaction committed (the caller awaited it): staging,
 *    derived tables, offsets and outbox are durable together;
 * 2. `durable`: hand the transaction's outbox rows to the Redis sink, which
 *    writes them in the background (the outbox keeps them until written);
 * 3. `ack`: resolve the offset for kafkajs and queue the Kafka offset
 *    commit, which only serves monitoring and the first position of a new
 *    group (the seek on assignment uses the Postgres offsets). Commits run
 *    one at a time, coalesced, so Kafka's offset never moves backwards and
 *    the next batch never waits for the broker.
 *
 * Never awaiting the Kafka commit matters under faults: after a broker
 * dies kafkajs keeps sending OffsetCommit to the old coordinator and
 * retries each refusal for seconds; a member that waited for it would miss
 * its heartbeats, lose its partitions and rejoin, again and again (the
 * clickstream group stalled for minutes that way in a chaos run).
 */
export class BatchAcker {
  private readonly toCommit = new Map<string, { topic: string; partition: number; offset: string }>();
  private committing: Promise<void> | undefined;

  /** `sink`: where `durable` hands the outbox rows; a group without a Redis outbox (clickstream) has none. */
  constructor(
    private readonly consumer: Consumer,
    private readonly log: Logger,
    private readonly o: { sink?: ClvRedisSink; timer?: StageTimer } = {},
  ) {}

  durable(outbox: readonly OutboxRow[]): void {
    if (!this.o.sink) throw new Error('BatchAcker.durable: this group has no Redis sink');
    this.o.sink.publish(outbox);
  }

  ack(topic: string, partition: number, lastOffset: string, nextOffset: string, resolveOffset: (o: string) => void): void {
    resolveOffset(lastOffset);
    const key = `${topic}/${partition}`;
    const prev = this.toCommit.get(key);
    if (!prev || BigInt(prev.offset) < BigInt(nextOffset)) this.toCommit.set(key, { topic, partition, offset: nextOffset });
    this.committing ??= this.commitLoop().finally(() => {
      this.committing = undefined;
    });
  }

  /** Resolves when the queued Kafka commits have been attempted. */
  async settled(): Promise<void> {
    while (this.committing) await this.committing;
  }

  private async commitLoop(): Promise<void> {
    while (this.toCommit.size > 0) {
      const offsets = [...this.toCommit.values()];
      this.toCommit.clear();
      const t0 = performance.now();
      try {
        await this.consumer.commitOffsets(offsets);
      } catch (err) {
        // Harmless: Postgres holds the position; Kafka catches up on the next commit.
        this.log.debug({ err: (err as Error).message }, 'kafka offset commit failed');
      }
      this.o.timer?.add('ack.kafka', performance.now() - t0);
    }
  }
}
