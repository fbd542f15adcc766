import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { type Admin, type Consumer, type Kafka, type KafkaMessage, type Producer } from 'kafkajs';
import type pg from 'pg';
import { decodeConfluent } from '../../src/consumer/avro.ts';
import { BatchAcker } from '../../src/consumer/batch-acker.ts';
import { DeadLetterWriter } from '../../src/consumer/dead-letters.ts';
import { createGroupClients } from '../../src/consumer/group-clients.ts';
import { decodeSlice } from '../../src/consumer/slice-decode.ts';
import { StoredOffsetSeeker, type RetentionGap } from '../../src/consumer/stored-offsets.ts';
import type { GroupMemberHooks } from '../../src/consumer/member-hooks.ts';
import { DecodeError, errorMessage, isPostgresDataError as isDataError } from '../../src/errors.ts';
import type { Service } from '../../src/lifecycle/service.ts';
import type { Logger } from '../../src/logger.ts';
import type { DeadLetterNote } from '../../src/sinks/postgres/consumer-progress.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { applyClickBatch, type ClickBatchOutcome, type ClickMessage } from './apply.ts';
import { ensureTopic } from './topic.ts';
import type { TopicReplication } from '../../src/config/index.ts';
import { validateClickEvent } from './validate.ts';

/**
 * The `clickstream` consumer group. The Kafka plumbing follows the warehouse
 * consumer (consumers/warehouse/consumer.ts): Postgres holds the offsets,
 * the group seeks to them on assignment, each slice of a batch is one
 * transaction, Kafka's committed offset trails for monitoring only. That
 * class is bound to the warehouse's apply and Redis outbox, so this is the
 * small adapter that reuses its parts (Avro decoding, the dead-letter
 * writer, slice decoding, the stored-offset seeker) around the clickstream
 * apply.
 */

export interface ClickstreamConsumerOptions extends GroupMemberHooks {
  /** Replication of the topics this creates (the clickstream topic, its DLQ): KAFKA_TOPIC_*, default from the cluster. */
  topicReplication?: TopicReplication;
  kafka: Kafka;
  registry: SchemaRegistry;
  pool: pg.Pool;
  schemas: WarehouseSchemas;
  group: string;
  topic: string;
  allowedLatenessUs: bigint;
  log: Logger;
  maxMessagesPerTx?: number;
  /** How long a crashed member holds its partitions before the group moves them. */
  sessionTimeoutMs?: number;
  /** Partitions when the topic does not exist yet and this consumer creates it. */
  partitions?: number;
}

export class ClickstreamConsumer implements Service {
  readonly name = 'clickstream-consumer';
  private consumer: Consumer | undefined;
  private producer: Producer | undefined;
  private admin: Admin | undefined;
  private stopping: Promise<void> | undefined;
  private acker: BatchAcker | undefined;
  private readonly seeker: StoredOffsetSeeker;
  /** Totals since start, for logs and tests. */
  readonly stats = { batches: 0, inserted: 0, duplicates: 0, beyondLateness: 0, deadLettered: 0 };

  constructor(private readonly o: ClickstreamConsumerOptions) {
    this.seeker = new StoredOffsetSeeker({ pool: o.pool, schemas: o.schemas, group: o.group, log: o.log, consumer: () => this.consumer, admin: () => this.admin, onRetentionGap: o.onRetentionGap });
  }

  async start(signal: AbortSignal): Promise<void> {
    const { kafka, group, log } = this.o;
    const { admin, producer, consumer } = createGroupClients(kafka, {
      group, log, signal, name: this.name, isStopping: () => this.stopping !== undefined,
      sessionTimeoutMs: this.o.sessionTimeoutMs, onConsumer: this.o.onConsumer, onFatal: this.o.onFatal, endpoints: this.o.endpoints,
    });
    this.admin = admin;
    this.producer = producer;
    this.consumer = consumer;
    await Promise.all([this.admin.connect(), this.producer.connect(), consumer.connect()]);
    await ensureTopic(this.admin, this.o.topic, this.o.partitions ?? 3, { log, signal, replication: this.o.topicReplication });
    const dlq = new DeadLetterWriter(this.producer, this.admin, log, { keptIn: `${this.o.schemas.meta}.dead_letters`, signal, replication: this.o.topicReplication });
    // Postgres holds the position; the Kafka commit is for monitoring, in the background.
    const acker = new BatchAcker(consumer, log);
    this.acker = acker;
    this.seeker.seekOnGroupJoin(consumer);
    await consumer.subscribe({ topics: [this.o.topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (await this.seeker.gapBeforeBatch(batch)) return;
        const max = this.o.maxMessagesPerTx ?? 1000;
        for (let i = 0; i < batch.messages.length; i += max) {
          if (!isRunning() || isStale() || signal.aborted) return;
          const slice = batch.messages.slice(i, i + max);
          await this.processSlice(batch.topic, batch.partition, slice, dlq);
          const last = slice[slice.length - 1]!;
          acker.ack(batch.topic, batch.partition, last.offset, (BigInt(last.offset) + 1n).toString(), resolveOffset);
          await heartbeat();
        }
      },
    });
    signal.addEventListener('abort', () => void this.stop(), { once: true });
  }

  private async processSlice(topic: string, partition: number, slice: KafkaMessage[], dlq: DeadLetterWriter): Promise<void> {
    const { decoded, bad, deadLetters } = await decodeSlice(slice, async (m) => {
      if (m.value === null || m.value.length === 0) throw new DecodeError('empty value (clickstream events are never tombstones)');
      return validateClickEvent(await decodeConfluent(this.o.registry, m.value), m.key);
    }, dlq, topic, partition);
    const messages: ClickMessage[] = decoded.map((d) => ({ offset: d.offset, event: d.value }));
    const t0 = performance.now();
    let out: ClickBatchOutcome;
    try {
      out = await applyClickBatch(this.o.pool, this.o.schemas, { group: this.o.group, topic, partition, messages, deadLetters }, this.o.allowedLatenessUs, this.o.log);
    } catch (err) {
      if (!isDataError(err)) throw err;
      out = await this.isolate(topic, partition, slice, messages, deadLetters, dlq, err);
    }
    // Clickstream events have no source commit: their Kafka timestamp is when they entered the pipeline.
    const sourceMs = slice.reduce((m, x) => Math.max(m, Number(x.timestamp) || 0), 0) || null;
    this.o.observer?.batchApplied([{ topic, messages: slice.length, sourceMs }], (performance.now() - t0) / 1000);
    this.stats.batches += 1;
    this.stats.inserted += out.inserted;
    this.stats.duplicates += out.duplicates;
    this.stats.beyondLateness += out.beyondLateness;
    this.stats.deadLettered += bad.length;
    this.o.log.debug({ topic, partition, ...out, recompute: out.recompute }, 'clickstream batch applied');
  }

  /**
   * Validation should catch every bad event, but if Postgres still refuses
   * one (class 22/23), the partition must not stall: apply the slice one
   * message at a time and dead-letter the ones refused.
   */
  private async isolate(topic: string, partition: number, slice: KafkaMessage[], messages: ClickMessage[], deadLetters: DeadLetterNote[], dlq: DeadLetterWriter, cause: unknown): Promise<ClickBatchOutcome> {
    this.o.log.warn({ topic, partition, err: errorMessage(cause) }, 'slice refused by Postgres; isolating the message');
    const total: ClickBatchOutcome = { nextOffset: '', inserted: 0, duplicates: 0, beyondLateness: 0, skippedAsApplied: 0, recompute: null };
    const add = (o: ClickBatchOutcome) => {
      total.nextOffset = o.nextOffset;
      total.inserted += o.inserted;
      total.duplicates += o.duplicates;
      total.beyondLateness += o.beyondLateness;
      total.skippedAsApplied += o.skippedAsApplied;
    };
    for (const m of messages) {
      const base = { group: this.o.group, topic, partition };
      try {
        add(await applyClickBatch(this.o.pool, this.o.schemas, { ...base, messages: [m], deadLetters: deadLetters.filter((d) => d.offset === m.offset) }, this.o.allowedLatenessUs, this.o.log));
      } catch (err) {
        if (!isDataError(err)) throw err;
        const error = `VALIDATION_FAILED: rejected by the warehouse: ${errorMessage(err)}`;
        const notes = await dlq.write(topic, partition, [{ message: slice.find((s) => s.offset === m.offset)!, error }]);
        this.stats.deadLettered += 1;
        add(await applyClickBatch(this.o.pool, this.o.schemas, { ...base, messages: [{ offset: m.offset, event: null }], deadLetters: notes }, this.o.allowedLatenessUs, this.o.log));
      }
    }
    return total;
  }

  /** Partitions whose unapplied events retention removed (empty when healthy); see StoredOffsetSeeker. */
  retentionGaps(): RetentionGap[] {
    return this.seeker.retentionGaps();
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.seeker.stop();
      // stop waits for the batch in flight: its transaction commits or rolls back whole.
      // Its queued Kafka offset commit then still lands before the disconnect.
      await this.consumer?.stop().catch((err) => this.o.log.warn({ err: errorMessage(err) }, 'consumer stop'));
      await this.acker?.settled();
      await this.consumer?.disconnect().catch((err) => this.o.log.warn({ err: errorMessage(err) }, 'consumer disconnect'));
      await this.producer?.disconnect().catch(() => {});
      await this.admin?.disconnect().catch(() => {});
    })();
    return this.stopping;
  }
}
