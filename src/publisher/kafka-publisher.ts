import type { Kafka as KafkaClient } from 'kafkajs';
import { CompressionTypes, linearGrouping, type Admin, type Message, type Producer } from './kafkajs.ts';
import { KafkaRefusedError, UnavailableError } from '../errors.ts';
import { classify } from '../lifecycle/classify.ts';
import type { Endpoint } from '../lifecycle/endpoints.ts';
import type { Logger } from '../logger.ts';
import { createTopicsReady } from './topic-ready.ts';
import type { TxTicket } from '../source/acker.ts';
import type { TopicReplication } from '../config/index.ts';

/**
 * Produces captured events with one idempotent producer (acks=all).
 *
 * Sends are strictly one at a time. kafkajs serialises idempotent requests
 * per broker anyway, and on a retriable error it hands the failed batch's
 * sequence numbers back before retrying; a second send queued behind it
 * would take them and overtake the failed batch, reordering a key. Throughput
 * comes from batch size instead: while one send is in flight, everything
 * captured meanwhile accumulates into the next one (group commit), so batches
 * grow with load and latency stays one round trip at low load.
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
  private producer: Producer;
  private admin: Admin;
  /** Topics created or checked by this process and served by their leaders. */
  private readonly readyTopics = new Set<string>();
  private pending: OutMessage[] = [];
  private pendingBytes = 0;
  private inFlightBytes = 0;
  private sending = false;
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
  ) {
    this.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    if (!linearGrouping) {
      // kafkajs' quadratic per-partition grouping is still in place: keep sends small.
      this.opts = { ...opts, maxBatchMessages: Math.min(opts.maxBatchMessages, 1000) };
      log.warn('kafkajs was loaded before src/publisher/kafkajs.ts; batches capped at 1000 messages');
    }
    this.admin = kafka.admin();
  }

  async connect(): Promise<void> {
    try {
      await this.producer.connect();
      await this.admin.connect();
    } catch (err) {
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
    return !this.sending && this.pending.length === 0;
  }

  add(m: OutMessage): void {
    if (this.failed) throw this.failed;
    this.pending.push(m);
    this.pendingBytes += sizeOf(m);
    if (!this.sending) queueMicrotask(() => this.kick());
  }

  private kick(): void {
    if (this.sending || this.failed || this.pending.length === 0) return;
    let n = 0;
    let bytes = 0;
    while (n < this.pending.length && n < this.opts.maxBatchMessages && bytes < this.opts.maxBatchBytes) bytes += sizeOf(this.pending[n++]!);
    const batch = n === this.pending.length ? this.pending : this.pending.slice(0, n);
    this.pending = n === this.pending.length ? [] : this.pending.slice(n);
    this.pendingBytes -= bytes;
    this.inFlightBytes += bytes;
    this.sending = true;
    void this.send(batch, bytes);
  }

  private async send(batch: OutMessage[], bytes: number): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const m of batch) {
      let list = byTopic.get(m.topic);
      if (!list) byTopic.set(m.topic, (list = []));
      list.push({ key: m.key, value: m.value, headers: m.headers });
    }
    const t0 = performance.now();
    try {
      await this.producer.sendBatch({
        acks: -1, compression: CompressionTypes.None,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
    } catch (err) {
      // A refusal on the merits (a record too large) is fatal; anything else is the broker being away.
      const c = classify(err, { via: this.via });
      this.failed = c.retriable
        ? new UnavailableError('KAFKA_UNAVAILABLE', `Kafka send failed after retries: ${c.error.message}`, { cause: err })
        : new KafkaRefusedError(`Kafka refused a send: ${c.error.message}`, { cause: err });
      this.sending = false;
      this.events.fatal(this.failed);
      this.notifyIdle();
      return;
    }
    this.stats.sends += 1;
    this.stats.messages += batch.length;
    this.stats.sendMs += performance.now() - t0;
    const wasHigh = this.bufferedBytes > this.opts.lowWaterBytes;
    this.inFlightBytes -= bytes;
    this.sending = false;
    this.events.acked(batch);
    if (wasHigh && this.bufferedBytes <= this.opts.lowWaterBytes) this.events.drained();
    if (this.pending.length > 0) this.kick();
    else this.notifyIdle();
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
    await this.producer.disconnect().catch(() => {});
    await this.admin.disconnect().catch(() => {});
  }
}
