import { type Admin, type Consumer, type Kafka, type KafkaMessage, type Producer } from 'kafkajs';
import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type pg from 'pg';
import { errorMessage, isPostgresDataError as isDataError } from '../../src/errors.ts';
import type { Service } from '../../src/lifecycle/service.ts';
import { createTopicsReady, waitTopicsReady } from '../../src/publisher/topic-ready.ts';
import type { Logger } from '../../src/logger.ts';
import type { BatchMessage, BatchOutcome, PartitionBatch } from '../../src/sinks/postgres/batch-tx.ts';
import { applyBatches } from './apply.ts';
import type { ClvThresholds } from './derived-sql.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { ClvRedisSink } from '../../src/sinks/redis/clv-redis.ts';
import type { RedisClient } from '../../src/sinks/redis/redis-client.ts';
import type { TopicReplication } from '../../src/config/index.ts';
import { ExtraColumnResolver } from '../../src/consumer/column-types.ts';
import { AUTO_FORMATS, MessageDecoder, type InputFormats } from '../../src/consumer/decode.ts';
import { BatchAcker } from '../../src/consumer/batch-acker.ts';
import { createGroupClients } from '../../src/consumer/group-clients.ts';
import { sleep } from '../../src/util/sleep.ts';
import { DeadLetterWriter } from '../../src/consumer/dead-letters.ts';
import { GroupCommit } from '../../src/consumer/group-commit.ts';
import { validateEnvelope } from '../../src/consumer/envelope.ts';
import { decodeSlice } from '../../src/consumer/slice-decode.ts';
import { StageTimer } from '../../src/consumer/stage-timer.ts';
import { sliceMessages, TxSizer } from '../../src/consumer/tx-sizer.ts';
import { StoredOffsetSeeker, type RetentionGap } from '../../src/consumer/stored-offsets.ts';
import type { GroupMemberHooks } from '../../src/consumer/member-hooks.ts';

/**
 * The warehouse consumer group: source-table topics → staging, history,
 * derived tables and CLV (docs/consumers.md). kafkajs hands over the
 * batches of several partitions at once; they are decoded concurrently and
 * applied by one group commit (one transaction at a time per process, and
 * every transaction takes the namespace lock), so batches never race on a
 * key, within or across processes.
 */
export interface WarehouseConsumerOptions extends GroupMemberHooks {
  kafka: Kafka;
  registry: SchemaRegistry;
  pool: pg.Pool;
  redis: RedisClient;
  schemas: WarehouseSchemas;
  group: string;
  topics: string[];
  redisKeyPrefix: string;
  log: Logger;
  thresholds?: ClvThresholds;
  /** Backpressure: bytes fetched per partition and per fetch. */
  maxBytesPerPartition?: number;
  maxBytes?: number;
  /** Largest slice of a fetched batch applied in one Postgres transaction (a cap: the size follows the budgets below). */
  maxMessagesPerTx?: number;
  maxBytesPerTx?: number;
  /** Time budget of one transaction when nothing waits behind the fetched batch (latency), and when a backlog waits (throughput); see TxSizer. */
  txBudgetMs?: number;
  backlogTxBudgetMs?: number;
  /** How often a pending outbox is retried when no batch arrives (Redis was down). */
  redisRetryMs?: number;
  /** Kafka group session timeout: how long a crashed member holds its partitions. */
  sessionTimeoutMs?: number;
  /** Replay mode: staging and history only; derived tables are rebuilt afterwards by `fullRefresh`. */
  deferDerived?: boolean;
  /** How long to wait for the capture to create missing topics before creating them. */
  topicWaitMs?: number;
  /** Partition batches kafkajs may hand over at once (and so join one transaction). */
  partitionsConcurrently?: number;
  /** Wire format per topic (default: detected per message). */
  inputFormats?: InputFormats;
  /** Replication of topics this creates (dead-letter topics, missing source topics): KAFKA_TOPIC_*, default from the cluster. */
  topicReplication?: TopicReplication;
}

/** How often a member heartbeats while its transaction runs (kafkajs sends one only when its own interval, 3 s, has passed). */
const HEARTBEAT_DURING_TX_MS = 1000;

/** A decoded slice of one partition's batch, with its raw messages for dead-lettering. */
interface DecodedPart extends PartitionBatch {
  slice: KafkaMessage[];
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
  private readonly seeker: StoredOffsetSeeker;
  readonly stages: StageTimer;
  private acker: BatchAcker | undefined;
  private readonly decoder: MessageDecoder;
  private readonly columns: ExtraColumnResolver;
  private readonly sizer: TxSizer;

  constructor(private readonly o: WarehouseConsumerOptions) {
    this.sink = new ClvRedisSink(o.redis, o.pool, o.schemas, o.redisKeyPrefix, o.log);
    this.stages = new StageTimer(o.log, 'warehouse-consumer');
    this.decoder = new MessageDecoder(o.registry, o.inputFormats ?? AUTO_FORMATS);
    this.columns = new ExtraColumnResolver(o.registry);
    this.sizer = new TxSizer({
      maxMessages: o.maxMessagesPerTx ?? 20_000, maxBytes: o.maxBytesPerTx ?? 16 << 20,
      liveBudgetMs: o.txBudgetMs ?? 250, backlogBudgetMs: o.backlogTxBudgetMs ?? 5000,
    });
    this.seeker = new StoredOffsetSeeker({ pool: o.pool, schemas: o.schemas, group: o.group, log: o.log, consumer: () => this.consumer, admin: () => this.admin, onRetentionGap: o.onRetentionGap, warnOnSeekBack: true });
  }

  /** Partitions whose unapplied changes retention removed (empty when healthy); see StoredOffsetSeeker. */
  retentionGaps(): RetentionGap[] {
    return this.seeker.retentionGaps();
  }

  get redisSink(): ClvRedisSink {
    return this.sink;
  }

  async start(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    const { kafka, group, log } = this.o;
    const { admin, producer, consumer } = createGroupClients(kafka, {
      group, log, signal, name: this.name, isStopping: () => this.stopping !== undefined,
      sessionTimeoutMs: this.o.sessionTimeoutMs, onConsumer: this.o.onConsumer, onFatal: this.o.onFatal, endpoints: this.o.endpoints,
      // Large enough that a waiting backlog fills the backlog budget's transactions.
      consumerConfig: { maxBytesPerPartition: this.o.maxBytesPerPartition ?? 4 << 20, maxBytes: this.o.maxBytes ?? 32 << 20 },
    });
    this.admin = admin;
    this.producer = producer;
    this.consumer = consumer;
    await Promise.all([this.admin.connect(), this.producer.connect(), consumer.connect()]);
    const dlq = new DeadLetterWriter(this.producer, this.admin, log, { keptIn: `${this.o.schemas.meta}.dead_letters`, signal, replication: this.o.topicReplication });
    const acker = new BatchAcker(consumer, log, { sink: this.sink, timer: this.stages });
    this.acker = acker;
    const commit = new GroupCommit<DecodedPart, BatchOutcome>(async (parts) => {
      const t0 = performance.now();
      const out = await this.applyParts(parts, dlq);
      this.sizer.observe(parts.reduce((n, p) => n + p.messages.length, 0), performance.now() - t0);
      this.o.observer?.batchApplied(parts.map((p) => ({ topic: p.topic, messages: p.messages.length, sourceMs: newestCommitMs(p.messages) })), (performance.now() - t0) / 1000);
      acker.durable(out.outbox);
      this.stages.batchDone(parts.reduce((n, p) => n + p.messages.length, 0));
      return out.parts;
    });
    let idleSince = performance.now();
    let inHandler = 0;

    this.seeker.seekOnGroupJoin(consumer);
    await this.waitForTopics(signal);
    if (signal.aborted) return;
    await consumer.subscribe({ topics: this.o.topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.o.partitionsConcurrently ?? 8,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (inHandler++ === 0) this.stages.add('fetch', performance.now() - idleSince);
        try {
          if (await this.seeker.gapBeforeBatch(batch)) return;
          // More waiting behind this fetch: a backlog, drained in large transactions.
          const backlog = Number(batch.offsetLag()) > 0;
          const slices = sliceMessages(batch.messages, this.sizer.limits(backlog));
          if (slices.length === 0) return;
          // The next slice is decoded while the current one's transaction runs. Its
          // offsets are acknowledged only after its own transaction commits, so a
          // failed transaction stores and acknowledges nothing past itself: the
          // batch is fetched again from the last committed slice.
          let next: Promise<DecodedPart> | undefined = this.decodePart(batch.topic, batch.partition, slices[0]!, dlq);
          for (let i = 0; i < slices.length; i++) {
            const slice = slices[i]!;
            if (!isRunning() || isStale() || signal.aborted) {
              next?.catch(() => {});
              return;
            }
            const part: DecodedPart = await next!;
            const applied = commit.submit(part);
            next = i + 1 < slices.length ? this.decodePart(batch.topic, batch.partition, slices[i + 1]!, dlq) : undefined;
            // The member keeps heartbeating while the transaction runs, so a
            // backlog transaction slower than its budget (a busy machine) does
            // not outlast the session timeout. A failed heartbeat (a rebalance
            // under way) is left to the one after the slice, which kafkajs acts on.
            const beat = setInterval(() => void heartbeat().catch(() => {}), HEARTBEAT_DURING_TX_MS);
            try {
              await applied;
            } catch (err) {
              next?.catch(() => {});
              throw err;
            } finally {
              clearInterval(beat);
            }
            const last = slice[slice.length - 1]!;
            acker.ack(batch.topic, batch.partition, last.offset, (BigInt(last.offset) + 1n).toString(), resolveOffset);
            await heartbeat();
          }
        } finally {
          if (--inHandler === 0) idleSince = performance.now();
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
    const ready = { log: this.o.log, signal, replication: this.o.topicReplication };
    for (let attempt = 0; !signal.aborted; attempt++) {
      const existing = new Set(await this.admin!.listTopics());
      const missing = this.o.topics.filter((t) => !existing.has(t));
      // Existing is not enough: subscribe only once the leaders serve them (src/publisher/topic-ready.ts).
      if (missing.length === 0) return waitTopicsReady(this.admin!, this.o.topics, ready);
      if (Date.now() >= deadline) {
        this.o.log.warn({ missing }, 'topics still missing; creating them with broker defaults');
        await createTopicsReady(this.admin!, missing.map((topic) => ({ topic })), ready);
        continue;
      }
      if (attempt % 10 === 0) this.o.log.info({ missing }, 'waiting for the capture to create topics');
      await sleep(1000, signal);
    }
  }

  private async decodePart(topic: string, partition: number, slice: KafkaMessage[], dlq: DeadLetterWriter): Promise<DecodedPart> {
    const { decoded, deadLetters } = await this.stages.time('decode', () => decodeSlice(slice, async (m) => {
      if (m.value === null || m.value.length === 0) return null; // tombstone after a delete: nothing to apply
      // Added source columns are followed from the Avro writer schema; JSON input carries the modelled columns only (docs/consumers.md).
      // Decoded first: bytes that can never decode (an unknown schema id) are a DecodeError and go to the DLQ.
      const value = await this.decoder.value(topic, m.value);
      const columns = this.decoder.kind(topic, m.value) === 'avro' ? await this.columns.forMessage(m.value) : [];
      return validateEnvelope(value, columns);
    }, dlq, topic, partition));
    const messages: BatchMessage[] = decoded.map((d) => ({ offset: d.offset, change: d.value }));
    return { topic, partition, messages, deadLetters, slice };
  }

  private get batchOptions() {
    return { redisKeyPrefix: this.o.redisKeyPrefix, thresholds: this.o.thresholds, deferDerived: this.o.deferDerived, timer: this.stages };
  }

  private async applyParts(parts: DecodedPart[], dlq: DeadLetterWriter) {
    const strip = ({ slice: _, ...p }: DecodedPart): PartitionBatch => p;
    try {
      return await applyBatches(this.o.pool, this.o.schemas, this.o.group, parts.map(strip), this.batchOptions);
    } catch (err) {
      if (!isDataError(err)) throw err;
      const outbox = [];
      const outcomes = [];
      for (const part of parts) {
        const r = await this.applyIsolating(part, dlq);
        outcomes.push(r.outcome);
        outbox.push(...r.outbox);
      }
      return { parts: outcomes, outbox };
    }
  }

  /** One message the database refuses must not block the partition: apply one by one and dead-letter the ones that fail. */
  private async applyIsolating(part: DecodedPart, dlq: DeadLetterWriter) {
    const { topic, partition, messages, deadLetters: notes, slice } = part;
    const apply = async (p: PartitionBatch) => applyBatches(this.o.pool, this.o.schemas, this.o.group, [p], this.batchOptions);
    try {
      const r = await apply({ topic, partition, messages, deadLetters: notes });
      return { outcome: r.parts[0]!, outbox: r.outbox };
    } catch (err) {
      if (!isDataError(err)) throw err;
    }
    this.o.log.warn({ topic, partition }, 'batch refused by Postgres; isolating the message');
    const outbox = [];
    let outcome: BatchOutcome = { nextOffset: '', applied: 0, skippedAsApplied: 0 };
    for (const m of messages) {
      const note = notes.filter((n) => n.offset === m.offset);
      let r;
      try {
        r = await apply({ topic, partition, messages: [m], deadLetters: note });
      } catch (e) {
        if (!isDataError(e)) throw e;
        const original = slice.find((s) => s.offset === m.offset)!;
        const error = `VALIDATION_FAILED: rejected by the warehouse: ${errorMessage(e)}`;
        const deadLetters = await dlq.write(topic, partition, [{ message: original, error }]);
        r = await apply({ topic, partition, messages: [{ offset: m.offset, change: null }], deadLetters });
      }
      const o = r.parts[0]!;
      outbox.push(...r.outbox);
      outcome = { nextOffset: o.nextOffset, applied: outcome.applied + o.applied, skippedAsApplied: outcome.skippedAsApplied + o.skippedAsApplied };
    }
    return { outcome, outbox };
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      this.seeker.stop();
      // stop waits for the batch in flight: its transaction either commits or rolls back whole.
      // Its queued Kafka offset commit then still lands before the disconnect.
      await this.consumer?.stop().catch((err) => this.o.log.warn({ err: errorMessage(err) }, 'consumer stop'));
      await this.acker?.settled();
      await this.consumer?.disconnect().catch((err) => this.o.log.warn({ err: errorMessage(err) }, 'consumer disconnect'));
      await this.sink.published();
      await this.producer?.disconnect().catch(() => {});
      await this.admin?.disconnect().catch(() => {});
    })();
    return this.stopping;
  }

  get aborted(): boolean {
    return this.signal?.aborted ?? false;
  }
}

/** Source commit time (ms) of the newest change among the messages, for the freshness metric. */
function newestCommitMs(messages: readonly BatchMessage[]): number | null {
  let us = -1n;
  for (const m of messages) if (m.change && m.change.commitUs > us) us = m.change.commitUs;
  return us < 0n ? null : Number(us / 1000n);
}
