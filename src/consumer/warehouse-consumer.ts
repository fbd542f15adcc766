import kafkajs, { type Admin, type Batch, type Consumer, type Kafka, type KafkaMessage, type Producer } from 'kafkajs';
import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { CdcError, errorMessage } from '../errors.ts';
import type { Service } from '../lifecycle/service.ts';
import type { Logger } from '../logger.ts';
import { applyBatch, readStoredOffsets, type BatchMessage, type DeadLetterNote } from '../sinks/postgres/batch-tx.ts';
import type { ClvThresholds } from '../sinks/postgres/derived-sql.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { ClvRedisSink } from '../sinks/redis/clv-redis.ts';
import { decodeConfluent } from './avro.ts';
import { BatchAcker } from './batch-acker.ts';
import { sleep } from '../util/sleep.ts';
import { DeadLetterWriter } from './dead-letters.ts';
import { validateEnvelope } from './envelope.ts';

/**
 * The warehouse consumer group: source-table topics → staging, history,
 * derived tables and CLV (docs/consumers.md). Partitions are processed one
 * at a time (partitionsConsumedConcurrently = 1) and every transaction takes
 * the namespace lock, so batches never race on a key, within or across
 * processes.
 */
export interface WarehouseConsumerOptions {
  kafka: Kafka;
  registry: SchemaRegistry;
  pool: pg.Pool;
  redis: Redis;
  schemas: WarehouseSchemas;
  group: string;
  topics: string[];
  redisKeyPrefix: string;
  log: Logger;
  thresholds?: ClvThresholds;
  /** Backpressure: bytes fetched per partition and per fetch. */
  maxBytesPerPartition?: number;
  maxBytes?: number;
  /** Largest slice of a fetched batch applied in one Postgres transaction. */
  maxMessagesPerTx?: number;
  maxBytesPerTx?: number;
  /** How often a pending outbox is retried when no batch arrives (Redis was down). */
  redisRetryMs?: number;
  /** Kafka group session timeout: how long a crashed member holds its partitions. */
  sessionTimeoutMs?: number;
  /** Replay mode: staging and history only; derived tables are rebuilt afterwards by `fullRefresh`. */
  deferDerived?: boolean;
  /** How long to wait for the capture to create missing topics before creating them. */
  topicWaitMs?: number;
}

/** Postgres errors about the data itself (class 22 data exception, 23 integrity): retrying the same batch cannot help. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

export class WarehouseConsumer implements Service {
  readonly name = 'warehouse-consumer';
  private consumer: Consumer | undefined;
  private producer: Producer | undefined;
  private admin: Admin | undefined;
  private sink: ClvRedisSink;
  private timer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private signal: AbortSignal | undefined;
  /** Partitions already sent back to their stored offset once; a second gap means retention removed the data. */
  private readonly seekTried = new Map<string, string>();

  constructor(private readonly o: WarehouseConsumerOptions) {
    this.sink = new ClvRedisSink(o.redis, o.pool, o.schemas, o.redisKeyPrefix, o.log);
  }

  get redisSink(): ClvRedisSink {
    return this.sink;
  }

  async start(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    const { kafka, group, log } = this.o;
    this.admin = kafka.admin();
    this.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: kafkajs.Partitioners.DefaultPartitioner });
    const consumer = kafka.consumer({
      groupId: group,
      allowAutoTopicCreation: false,
      maxBytesPerPartition: this.o.maxBytesPerPartition ?? 1 << 20,
      maxBytes: this.o.maxBytes ?? 8 << 20,
      maxWaitTimeInMs: 100,
      sessionTimeout: this.o.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: Math.min(3000, Math.floor((this.o.sessionTimeoutMs ?? 30_000) / 5)),
      // Postgres or the registry being down is a pause, not a reason to die.
      retry: { retries: 8, restartOnFailure: async (err) => {
        log.error({ err: errorMessage(err) }, 'consumer failed; restarting');
        return !signal.aborted;
      } },
    });
    this.consumer = consumer;
    await Promise.all([this.admin.connect(), this.producer.connect(), consumer.connect()]);
    const dlq = new DeadLetterWriter(this.producer, this.admin, log);
    const acker = new BatchAcker(consumer, this.sink, log);

    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      void this.seekToStored(e.payload.memberAssignment).catch((err) => log.error({ err: errorMessage(err) }, 'seek to stored offsets failed; the batch guard still applies'));
    });
    await this.waitForTopics(signal);
    if (signal.aborted) return;
    await consumer.subscribe({ topics: this.o.topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (await this.gapBeforeBatch(batch)) return;
        for (const slice of this.slices(batch.messages)) {
          if (!isRunning() || isStale() || signal.aborted) return;
          await this.processSlice(batch.topic, batch.partition, slice, dlq);
          const last = slice[slice.length - 1]!;
          await acker.committed(batch.topic, batch.partition, last.offset, (BigInt(last.offset) + 1n).toString(), resolveOffset);
          await heartbeat();
        }
      },
    });
    this.timer = setInterval(() => void this.sink.flush(), this.o.redisRetryMs ?? 1000);
    this.timer.unref();
    signal.addEventListener('abort', () => void this.stop(), { once: true });
  }

  /**
   * The capture creates a table's topic with its first event (auto-creation
   * is off), so a consumer started first waits for them. A table that never
   * changes would never get one, so after `topicWaitMs` the consumer creates
   * what is still missing itself (broker-default partitions) and goes on.
   */
  private async waitForTopics(signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + (this.o.topicWaitMs ?? 30_000);
    for (let attempt = 0; !signal.aborted; attempt++) {
      const existing = new Set(await this.admin!.listTopics());
      const missing = this.o.topics.filter((t) => !existing.has(t));
      if (missing.length === 0) return;
      if (Date.now() >= deadline) {
        this.o.log.warn({ missing }, 'topics still missing; creating them with broker defaults');
        await this.admin!.createTopics({ topics: missing.map((topic) => ({ topic })), waitForLeaders: true }).catch((err: Error) => {
          if (!/already exists/i.test(err.message)) throw err;
        });
        continue;
      }
      if (attempt % 10 === 0) this.o.log.info({ missing }, 'waiting for the capture to create topics');
      await sleep(1000, signal);
    }
  }

  private async seekToStored(assignment: Record<string, number[]>): Promise<void> {
    const stored = await readStoredOffsets(this.o.pool, this.o.schemas, this.o.group);
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const offset = stored.get(`${topic}/${partition}`);
        if (offset !== undefined) this.consumer?.seek({ topic, partition, offset });
      }
    }
  }

  /** Kafka ahead of Postgres (offsets reset or committed elsewhere): go back to the Postgres position instead of skipping. */
  private async gapBeforeBatch(batch: Batch): Promise<boolean> {
    const first = batch.firstOffset();
    if (first === null) return false;
    const stored = (await readStoredOffsets(this.o.pool, this.o.schemas, this.o.group)).get(`${batch.topic}/${batch.partition}`);
    if (stored === undefined || BigInt(first) <= BigInt(stored)) return false;
    const key = `${batch.topic}/${batch.partition}`;
    if (this.seekTried.get(key) === stored) {
      this.o.log.error({ topic: batch.topic, partition: batch.partition, stored, first }, 'messages between the stored offset and the log start are gone (retention); continuing');
      return false;
    }
    this.seekTried.set(key, stored);
    this.o.log.warn({ topic: batch.topic, partition: batch.partition, stored, first }, 'batch starts after the stored offset; seeking back');
    this.consumer?.seek({ topic: batch.topic, partition: batch.partition, offset: stored });
    return true;
  }

  private *slices(messages: KafkaMessage[]): Generator<KafkaMessage[]> {
    const maxN = this.o.maxMessagesPerTx ?? 2000;
    const maxB = this.o.maxBytesPerTx ?? 4 << 20;
    let cur: KafkaMessage[] = [];
    let bytes = 0;
    for (const m of messages) {
      const size = (m.value?.length ?? 0) + (m.key?.length ?? 0);
      if (cur.length > 0 && (cur.length >= maxN || bytes + size > maxB)) {
        yield cur;
        cur = [];
        bytes = 0;
      }
      cur.push(m);
      bytes += size;
    }
    if (cur.length > 0) yield cur;
  }

  private async processSlice(topic: string, partition: number, slice: KafkaMessage[], dlq: DeadLetterWriter): Promise<void> {
    const messages: BatchMessage[] = [];
    const bad: Array<{ message: KafkaMessage; error: string }> = [];
    for (const m of slice) {
      if (m.value === null || m.value.length === 0) {
        messages.push({ offset: m.offset, change: null }); // tombstone after a delete: nothing to apply
        continue;
      }
      try {
        const decoded = await decodeConfluent(this.o.registry, m.value);
        messages.push({ offset: m.offset, change: validateEnvelope(decoded) });
      } catch (err) {
        if (err instanceof CdcError && err.retriable) throw err; // registry down: retry the batch, do not dead-letter
        bad.push({ message: m, error: `${err instanceof CdcError ? err.code : 'DECODE_FAILED'}: ${errorMessage(err)}` });
        messages.push({ offset: m.offset, change: null });
      }
    }
    const dlqTopic = await dlq.send(topic, partition, bad);
    const notes: DeadLetterNote[] = bad.map((b) => ({ offset: b.message.offset, dlqTopic, error: b.error }));
    const opts = { redisKeyPrefix: this.o.redisKeyPrefix, thresholds: this.o.thresholds, deferDerived: this.o.deferDerived };
    try {
      await applyBatch(this.o.pool, this.o.schemas, { group: this.o.group, topic, partition, messages, deadLetters: notes }, opts);
    } catch (err) {
      if (!isDataError(err)) throw err;
      // One message the database refuses must not block the partition:
      // apply one by one and dead-letter the ones that fail.
      this.o.log.warn({ topic, partition, err: errorMessage(err) }, 'batch refused by Postgres; isolating the message');
      for (const m of messages) {
        const note = notes.filter((n) => n.offset === m.offset);
        try {
          await applyBatch(this.o.pool, this.o.schemas, { group: this.o.group, topic, partition, messages: [m], deadLetters: note }, opts);
        } catch (e) {
          if (!isDataError(e)) throw e;
          const original = slice.find((s) => s.offset === m.offset)!;
          const error = `VALIDATION_FAILED: rejected by the warehouse: ${errorMessage(e)}`;
          await dlq.send(topic, partition, [{ message: original, error }]);
          await applyBatch(this.o.pool, this.o.schemas, { group: this.o.group, topic, partition, messages: [{ offset: m.offset, change: null }], deadLetters: [{ offset: m.offset, dlqTopic: `${topic}.dlq`, error }] }, opts);
        }
      }
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      // disconnect waits for the batch in flight: its transaction either commits or rolls back whole.
      await this.consumer?.disconnect().catch((err) => this.o.log.warn({ err: errorMessage(err) }, 'consumer disconnect'));
      await this.producer?.disconnect().catch(() => {});
      await this.admin?.disconnect().catch(() => {});
    })();
    return this.stopping;
  }

  get aborted(): boolean {
    return this.signal?.aborted ?? false;
  }
}
