import { createRequire } from 'node:module';
import { ConfigError, KafkaRefusedError, UnavailableError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { OutMessage, PublisherOptions } from './kafka-publisher.ts';
import { Partitioners } from './kafkajs.ts';
import type { ProduceTransport } from './produce-transport.ts';

/**
 * librdkafka (through node-rdkafka) as the capture's producer
 * (CAPTURE_PRODUCER=rdkafka). Record batches are built, sent and retried by
 * librdkafka's own threads, so the event loop only hands over buffers.
 *
 * The guarantees are the kafkajs path's: enable.idempotence (acks=all, no
 * duplicates or reordering from its internal retries, at most 5 requests in
 * flight per broker), enable.gapless.guarantee (a failed batch stops the
 * producer rather than letting later records of its partition through),
 * keyed records on the partition kafkajs' default partitioner picks (computed
 * here and passed explicitly: librdkafka's own murmur2 partitioner put 26 of
 * 50 test keys elsewhere, so switching producers would have moved keys and
 * broken their order), and a batch counts as sent only when every record's delivery
 * report says the broker has it. A record that cannot be delivered fails the
 * batch and with it the capture, which resumes from the slot.
 */
interface RdkError extends Error { code: number; isFatal?: boolean; isRetriable?: boolean }
interface RdkReport { opaque?: BatchState; topic: string; partition: number; offset: number }
interface RdkProducer {
  connect(opts: Record<string, unknown>, cb: (err: RdkError | null) => void): void;
  disconnect(timeout: number, cb: (err: RdkError | null) => void): void;
  produce(topic: string, partition: number | null, message: Buffer | null, key: Buffer | null, timestamp: number | null, opaque: unknown, headers?: Record<string, string>[]): boolean;
  poll(): void;
  on(ev: 'delivery-report', fn: (err: RdkError | null, report: RdkReport) => void): void;
  on(ev: 'event.error', fn: (err: RdkError) => void): void;
  on(ev: 'event.log', fn: (e: { severity: number; fac: string; message: string }) => void): void;
}
interface RdkModule { Producer: new (conf: Record<string, unknown>, topicConf?: Record<string, unknown>) => RdkProducer; librdkafkaVersion: string }

interface BatchState { left: number; resolve: () => void; reject: (e: Error) => void; failed: boolean }

/** librdkafka's error codes that are a refusal on the merits (docs/errors.md: KAFKA_REFUSED). */
const REFUSED = new Set([
  10, // MSG_SIZE_TOO_LARGE
  -186, // _MSG_SIZE_TOO_LARGE
  17, // INVALID_TOPIC_EXCEPTION
  18, // RECORD_LIST_TOO_LARGE
  29, // TOPIC_AUTHORIZATION_FAILED
  2, // CORRUPT_MESSAGE
  87, // INVALID_RECORD
  -188, // _UNKNOWN_TOPIC (auto-creation is off; the capture creates every topic before producing to it)
]);
const QUEUE_FULL = -184;
/** Stands in for a produced record's value (non-null: the ack path tells tombstones by a null value). */
const SENT = Buffer.alloc(0);

let loaded: RdkModule | null = null;
/** node-rdkafka is not a package.json dependency (a native build: `stack.sh test-deps`): asking for it without it is a configuration error. */
export function loadRdkafka(): RdkModule {
  if (loaded) return loaded;
  try {
    loaded = createRequire(import.meta.url)('node-rdkafka') as RdkModule;
    return loaded;
  } catch (err) {
    throw new ConfigError(`CAPTURE_PRODUCER=rdkafka needs the node-rdkafka package, which did not load (${(err as Error).message.split('\n')[0]}); build it with 'bash scripts/stack.sh test-deps' (or npm install --no-save node-rdkafka@3.6.1; needs build-essential and python3) or use CAPTURE_PRODUCER=kafkajs`, { cause: err });
  }
}

function failure(err: RdkError, what: string): UnavailableError | KafkaRefusedError {
  const msg = `${what}: ${err.message} (librdkafka code ${err.code})`;
  return REFUSED.has(err.code)
    ? new KafkaRefusedError(`Kafka refused a send: ${msg}`, { cause: err })
    : new UnavailableError('KAFKA_UNAVAILABLE', `Kafka send failed after retries: ${msg}`, { cause: err });
}

export class RdkafkaTransport implements ProduceTransport {
  readonly name = 'rdkafka' as const;
  /** librdkafka pipelines and orders by itself; the water marks bound what is outstanding. */
  readonly maxInFlight = 1_000_000;
  private readonly producer: RdkProducer;
  private outstanding = 0;
  private pollTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private fatal: Error | null = null;
  private readonly batches = new Set<BatchState>();
  /** Partition metadata per topic the publisher made ready, for kafkajs' partitioner. */
  private readonly partitions = new Map<string, { partitionId: number; leader: number; replicas: number[]; isr: number[]; partitionErrorCode: number }[]>();
  private readonly partitioner = Partitioners.DefaultPartitioner();

  constructor(brokers: string[], opts: PublisherOptions, private readonly log: Logger) {
    const rdk = loadRdkafka();
    if (brokers.length === 0) throw new ConfigError('CAPTURE_PRODUCER=rdkafka: no Kafka brokers (KAFKA_BROKERS)');
    this.producer = new rdk.Producer({
      'client.id': 'shopstream-capture',
      'metadata.broker.list': brokers.join(','),
      'enable.idempotence': true,
      'enable.gapless.guarantee': true,
      acks: 'all',
      'linger.ms': opts.lingerMs,
      'batch.num.messages': opts.maxBatchMessages,
      'batch.size': opts.maxBatchBytes,
      // Above the publisher's own high-water mark: the replication socket pauses before librdkafka's queue fills.
      'queue.buffering.max.kbytes': Math.ceil((opts.highWaterBytes * 2 + opts.maxBatchBytes) / 1024),
      'queue.buffering.max.messages': 2_000_000,
      'message.timeout.ms': 60_000,
      'compression.codec': 'none',
      'socket.nagle.disable': true,
      // Only for keyless records (dead letters, keyless truncates); keyed ones get an explicit partition.
      partitioner: 'murmur2_random',
      'allow.auto.create.topics': false,
      dr_cb: true,
    });
    this.producer.on('delivery-report', (err, report) => this.onReport(err, report));
    this.producer.on('event.error', (err) => {
      // Broker connections coming and going are reported here too; librdkafka reconnects by itself.
      if (err.isFatal) this.failAll(failure(err, 'librdkafka fatal error'));
      else this.log.debug({ err: err.message, code: err.code }, 'librdkafka error (retried by librdkafka)');
    });
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.producer.connect({ timeout: 30_000 }, (err) => {
        if (err) { reject(new UnavailableError('KAFKA_UNAVAILABLE', `cannot connect to Kafka (librdkafka): ${err.message}`, { cause: err })); return; }
        // Delivery reports and errors arrive through poll(): quickly while records are out, slowly when idle.
        this.idleTimer = setInterval(() => this.poll(), 100);
        this.idleTimer.unref();
        resolve();
      });
    });
  }

  topicReady(topic: string, partitionCount: number): void {
    this.partitions.set(topic, Array.from({ length: partitionCount }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 })));
  }

  private partitionOf(m: OutMessage): number | null {
    if (!m.key) return null;
    const partitionMetadata = this.partitions.get(m.topic);
    if (!partitionMetadata) return null;
    return partitionMetadata.length === 1 ? 0 : this.partitioner({ topic: m.topic, partitionMetadata, message: { key: m.key, value: m.value } });
  }

  private poll(): void {
    try {
      this.producer.poll();
    } catch (err) {
      this.log.debug({ err }, 'librdkafka poll failed');
    }
  }

  send(batch: OutMessage[]): Promise<void> {
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise<void>((resolve, reject) => {
      const st: BatchState = { left: batch.length, resolve, reject, failed: false };
      if (batch.length === 0) { resolve(); return; }
      this.batches.add(st);
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i]!;
        const headers = m.headers ? Object.entries(m.headers).map(([k, v]) => ({ [k]: v })) : undefined;
        try {
          this.producer.produce(m.topic, this.partitionOf(m), m.value, m.key, null, st, headers);
          // librdkafka holds its own copy now: let ours go rather than keep every record twice until its ack.
          m.key = null;
          if (m.value) m.value = SENT;
        } catch (err) {
          const e = err as RdkError;
          // The publisher's water marks keep librdkafka's queue below its bound; reaching it means they are misconfigured.
          const f = e.code === QUEUE_FULL
            ? new UnavailableError('KAFKA_UNAVAILABLE', 'librdkafka queue full: raise queue.buffering.max.kbytes or lower CAPTURE_HIGH_WATER_MB', { cause: err })
            : failure(e, 'produce');
          this.failAll(f);
          return;
        }
        this.outstanding += 1;
      }
      if (!this.pollTimer) this.pollTimer = setInterval(() => this.poll(), 1);
    });
  }

  private onReport(err: RdkError | null, report: RdkReport): void {
    this.outstanding -= 1;
    if (this.outstanding === 0 && this.pollTimer) { clearInterval(this.pollTimer); this.pollTimer = null; }
    const st = report.opaque;
    if (!st || st.failed) return;
    if (err) { this.failAll(failure(err, `delivery to ${report.topic}`)); return; }
    st.left -= 1;
    if (st.left === 0) { this.batches.delete(st); st.resolve(); }
  }

  /** Any undeliverable record fails every batch still out: the capture stops and resumes from the slot. */
  private failAll(err: Error): void {
    this.fatal ??= err;
    for (const st of this.batches) { st.failed = true; st.reject(this.fatal); }
    this.batches.clear();
  }

  close(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.pollTimer = null;
    this.idleTimer = null;
    return new Promise((resolve) => {
      try {
        this.producer.disconnect(5000, () => resolve());
      } catch {
        resolve();
      }
    });
  }
}
