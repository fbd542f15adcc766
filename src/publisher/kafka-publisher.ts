import type { Kafka as KafkaClient } from 'kafkajs';
import { linearGrouping, type Admin } from './kafkajs.ts';
import { CdcError, UnavailableError } from '../errors.ts';
import type { Endpoint } from '../lifecycle/endpoints.ts';
import type { Logger } from '../logger.ts';
import { KafkajsTransport, sendFailure, type ProduceTransport } from './produce-transport.ts';
import { RdkafkaTransport } from './rdkafka-transport.ts';
import { createTopicsReady } from './topic-ready.ts';
import type { TxTicket } from '../source/acker.ts';
import type { TopicReplication } from '../config/index.ts';

/**
 * Produces captured events with one idempotent producer (acks=all), kafkajs
 * or librdkafka (`producer`, src/publisher/produce-transport.ts).
 *
 * With kafkajs sends are strictly one at a time (see KafkajsTransport):
 * while one send is in flight, everything captured meanwhile accumulates
 * into the next one (group commit), so batches grow with load and latency
 * stays one round trip at low load. librdkafka keeps per-partition order
 * with idempotence itself, so batches go to it as they come.
 *
 * Memory is bounded by bytes buffered + in flight: above `highWaterBytes`
 * the capture pauses the replication socket, below `lowWaterBytes` it
 * resumes.
 */
export interface OutMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, string>;
  ticket: TxTicket | null;
  /** When the source committed, for the commit -> ack latency metric (ms since epoch). */
  commitMs: number;
  /** For per-table metrics. */
  table: string;
  op: string;
}

export interface PublisherOptions {
  highWaterBytes: number;
  lowWaterBytes: number;
  /** Cap of one send; must stay under the topics' max.message.bytes per partition. */
  maxBatchBytes: number;
  maxBatchMessages: number;
  partitions: number;
  /** Replicas of the topics the capture creates; null: KAFKA_TOPIC_REPLICATION_FACTOR, else from the cluster (src/publisher/topic-ready.ts). */
  replicationFactor: number | null;
  /** min.insync.replicas and the cluster default of the replication factor. */
  replication?: TopicReplication;
  /** `cleanup.policy` of the table topics the capture creates (docs/capture.md, "Topics"). */
  cleanupPolicy: 'compact' | 'delete' | 'compact,delete';
  /** `delete.retention.ms` of compacted table topics: how long a tombstone outlives compaction. */
  deleteRetentionMs: number;
  /** Kafka client that produces the records (CAPTURE_PRODUCER); topics are created through kafkajs' admin either way. */
  producer: 'kafkajs' | 'rdkafka';
  /** librdkafka's linger.ms (CAPTURE_LINGER_MS): how long it waits to fill a batch. */
  lingerMs: number;
}

export const DEFAULT_PUBLISHER_OPTIONS: PublisherOptions = {
  // Measured: with 64/16 MiB the 1M-change backlog peaked at ~360 MiB RSS, with 24/8 at ~303;
  // larger buffers did not raise throughput (one send in flight drains them).
  highWaterBytes: 16 * 1024 * 1024,
  lowWaterBytes: 4 * 1024 * 1024,
  maxBatchBytes: 2 * 1024 * 1024,
  maxBatchMessages: 20_000,
  partitions: 1,
  replicationFactor: null,
  cleanupPolicy: 'compact',
  // A consumer (or a rebuild) that is further behind than this may miss a
  // delete's tombstone and keep the row: 7 days, Kafka's default is 1.
  deleteRetentionMs: 7 * 24 * 3600 * 1000,
  producer: 'kafkajs',
  lingerMs: 2,
};

export interface PublisherEvents {
  /** Kafka acknowledged these messages (in send order). */
  acked(batch: OutMessage[]): void;
  /** Buffered bytes dropped below the low-water mark. */
  drained(): void;
  /** A send failed for good: the capture must stop without confirming further. */
  fatal(err: Error): void;
}

/** kafkajs ConfigResourceTypes.TOPIC (the enum is not re-exported by ./kafkajs.ts). */
const TOPIC_RESOURCE = 2;

const sizeOf = (m: OutMessage) => (m.key?.length ?? 0) + (m.value?.length ?? 0) + 64;

export class KafkaPublisher {
  private readonly transport: ProduceTransport;
  private admin: Admin;
  /** Topics created or checked by this process and served by their leaders. */
  private readonly readyTopics = new Set<string>();
  private pending: OutMessage[] = [];
  private pendingBytes = 0;
  private inFlightBytes = 0;
  private inFlight = 0;
  private kickQueued = false;
  private failed: Error | null = null;
  private idleWaiters: (() => void)[] = [];
  /** Ends topic waits when the publisher closes (a capture torn down for an in-process restart). */
  private readonly closed = new AbortController();
  /** Counters for the progress log and the benchmark. */
  readonly stats = { sends: 0, messages: 0, sendMs: 0 };

  constructor(
    kafka: KafkaClient,
    private opts: PublisherOptions,
    private readonly events: PublisherEvents,
    private readonly log: Logger,
    private readonly via?: Endpoint,
    /** Brokers for librdkafka (`producer: 'rdkafka'`); kafkajs takes them from `kafka`. */
    brokers: string[] = [],
  ) {
    this.transport = opts.producer === 'rdkafka'
      ? new RdkafkaTransport(brokers, opts, log)
      : new KafkajsTransport(kafka, via, log);
    if (!linearGrouping && opts.producer === 'kafkajs') {
      // kafkajs' quadratic per-partition grouping is still in place: keep sends small.
      this.opts = { ...opts, maxBatchMessages: Math.min(opts.maxBatchMessages, 1000) };
      log.warn('kafkajs was loaded before src/publisher/kafkajs.ts; batches capped at 1000 messages');
    }
    this.admin = kafka.admin();
  }

  async connect(): Promise<void> {
    try {
      await this.transport.connect();
      await this.admin.connect();
    } catch (err) {
      if (err instanceof CdcError) throw err;
      throw new UnavailableError('KAFKA_UNAVAILABLE', `cannot connect to Kafka: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Creates a topic if missing (auto-creation is off on our brokers) and,
   * created or not, waits until its leaders serve it (src/publisher/topic-ready.ts)
   * before anything is produced to it. Once per topic per process. A table
   * topic (`table`) gets the configured cleanup policy, so a rebuild from the
   * earliest offset still finds every key's latest change; DLQ and
   * transaction topics (keyless or append-only) keep `delete`. An existing
   * table topic is never altered: a warning says when it is not compacted.
   */
  async ensureTopic(topic: string, kind: 'table' | 'other' = 'other', signal: AbortSignal = this.closed.signal): Promise<void> {
    if (this.readyTopics.has(topic)) return;
    const existed = kind === 'table' && (await this.admin.listTopics()).includes(topic);
    const compact = kind === 'table' && this.opts.cleanupPolicy.includes('compact');
    const configEntries = [{ name: 'max.message.bytes', value: String(Math.max(this.opts.maxBatchBytes * 2, 1_048_588)) }];
    if (kind === 'table') configEntries.push({ name: 'cleanup.policy', value: this.opts.cleanupPolicy });
    if (compact) configEntries.push({ name: 'delete.retention.ms', value: String(this.opts.deleteRetentionMs) });
    await createTopicsReady(this.admin, [{
      topic, numPartitions: this.opts.partitions, replicationFactor: this.opts.replicationFactor ?? undefined, configEntries,
    }], { log: this.log, signal, via: this.via, replication: this.opts.replication });
    if (this.transport.topicReady) {
      const md = await this.admin.fetchTopicMetadata({ topics: [topic] });
      this.transport.topicReady(topic, md.topics[0]?.partitions.length ?? this.opts.partitions);
    }
    this.readyTopics.add(topic);
    if (existed) await this.checkCleanup(topic);
    this.log.info({ topic, cleanupPolicy: kind === 'table' ? this.opts.cleanupPolicy : 'delete' }, 'topic ready');
  }

  private async checkCleanup(topic: string): Promise<void> {
    try {
      const res = await this.admin.describeConfigs({ includeSynonyms: false, resources: [{ type: TOPIC_RESOURCE, name: topic, configNames: ['cleanup.policy'] }] });
      const policy = res.resources[0]?.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue ?? 'delete';
      if (this.opts.cleanupPolicy.includes('compact') && !policy.includes('compact')) {
        this.log.warn({ topic, cleanupPolicy: policy, wanted: this.opts.cleanupPolicy },
          'existing table topic is not compacted (left as is): a rebuild from the earliest offset needs every key\'s latest change; see docs/capture.md "Topics"');
      }
    } catch (err) {
      this.log.warn({ err, topic }, 'could not read the topic\'s cleanup.policy');
    }
  }

  get bufferedBytes(): number {
    return this.pendingBytes + this.inFlightBytes;
  }

  get overHighWater(): boolean {
    return this.bufferedBytes > this.opts.highWaterBytes;
  }

  get idle(): boolean {
    return this.inFlight === 0 && this.pending.length === 0;
  }

  /** Which client produces (for the progress log and the benchmark). */
  get producerName(): string {
    return this.transport.name;
  }

  add(m: OutMessage): void {
    if (this.failed) throw this.failed;
    this.pending.push(m);
    this.pendingBytes += sizeOf(m);
    // One kick per turn of the event loop: everything decoded from one socket read goes out together.
    if (!this.kickQueued && this.inFlight < this.transport.maxInFlight) {
      this.kickQueued = true;
      queueMicrotask(() => { this.kickQueued = false; this.kick(); });
    }
  }

  private kick(): void {
    while (!this.failed && this.pending.length > 0 && this.inFlight < this.transport.maxInFlight) {
      let n = 0;
      let bytes = 0;
      while (n < this.pending.length && n < this.opts.maxBatchMessages && bytes < this.opts.maxBatchBytes) bytes += sizeOf(this.pending[n++]!);
      const batch = n === this.pending.length ? this.pending : this.pending.slice(0, n);
      this.pending = n === this.pending.length ? [] : this.pending.slice(n);
      this.pendingBytes -= bytes;
      this.inFlightBytes += bytes;
      this.inFlight += 1;
      void this.send(batch, bytes);
    }
  }

  private async send(batch: OutMessage[], bytes: number): Promise<void> {
    const t0 = performance.now();
    try {
      await this.transport.send(batch);
    } catch (err) {
      this.inFlight -= 1;
      if (this.failed) return;
      this.failed = err instanceof CdcError ? err : sendFailure(err, this.via);
      this.events.fatal(this.failed);
      this.notifyIdle();
      return;
    }
    if (this.failed) return;
    this.stats.sends += 1;
    this.stats.messages += batch.length;
    this.stats.sendMs += performance.now() - t0;
    const wasHigh = this.bufferedBytes > this.opts.lowWaterBytes;
    this.inFlightBytes -= bytes;
    this.inFlight -= 1;
    this.events.acked(batch);
    if (wasHigh && this.bufferedBytes <= this.opts.lowWaterBytes) this.events.drained();
    if (this.pending.length > 0) this.kick();
    else if (this.inFlight === 0) this.notifyIdle();
  }

  private notifyIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of w) fn();
  }

  /** Resolves once everything added so far is acknowledged (or the publisher failed). */
  async flush(): Promise<void> {
    if (this.idle || this.failed) {
      if (this.failed) throw this.failed;
      return;
    }
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.failed) throw this.failed;
    if (!this.idle) return this.flush();
  }

  async close(): Promise<void> {
    this.closed.abort();
    await this.transport.close().catch(() => {});
    await this.admin.disconnect().catch(() => {});
  }
}
