import type { Consumer } from 'kafkajs';
import type { Logger } from '../logger.ts';
import type { ClvRedisSink } from '../sinks/redis/clv-redis.ts';

/**
 * Owns "acknowledge only what is durable downstream". The order is fixed:
 * 1. the Postgres transaction committed (the caller awaited it): staging,
 *    derived tables, offsets and outbox are durable together;
 * 2. flush the outbox to Redis (failure is logged, the outbox keeps it);
 * 3. resolve and commit the offset in Kafka, which only serves monitoring
 *    and the first position after a group is new (the seek on assignment
 *    uses the Postgres offsets).
 */
export class BatchAcker {
  constructor(
    private readonly consumer: Consumer,
    private readonly sink: ClvRedisSink,
    private readonly log: Logger,
  ) {}

  async committed(topic: string, partition: number, lastOffset: string, nextOffset: string, resolveOffset: (o: string) => void): Promise<void> {
    await this.sink.flush();
    resolveOffset(lastOffset);
    try {
      await this.consumer.commitOffsets([{ topic, partition, offset: nextOffset }]);
    } catch (err) {
      // Harmless: Postgres holds the position; Kafka catches up on the next commit.
      this.log.debug({ err: (err as Error).message, topic, partition }, 'kafka offset commit failed');
    }
  }
}
