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
type DeliveryCb = ((err: Error | null, report: RdkReport) => void) & { dr_msg_cb?: boolean };
interface RdkProducer {
  /** node-rdkafka 3.x internals: the function its native side calls per delivery report (see reportsDirect). */
  _cb_configs?: { event?: { delivery_cb?: DeliveryCb } };
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
/** A run of consecutive records of one batch produced to one partition, acknowledged in that order. */
interface Run { st: BatchState; n: number }
/** The runs produced to one partition and not yet all reported, oldest first. */
interface PartitionQueue { runs: Run[]; head: number; lastOffset: number }

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
  /** Per topic and partition, the runs of records produced there whose reports are still due. */
  private readonly queues = new Map<string, PartitionQueue[]>();
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
    this.reportsDirect();
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

  /**
   * node-rdkafka calls one function per delivery report, which wraps the error
   * and emits 'delivery-report' through an EventEmitter. Successful reports
   * (all but a failing run's) skip that and come here directly; errors still
   * take node-rdkafka's path, which gives them their librdkafka code. Only
   * where the internals are not as in node-rdkafka 3.x does every report take
   * the emitter.
   */
  private reportsDirect(): void {
    const cbs = this.producer._cb_configs?.event;
    const wrapped = cbs?.delivery_cb;
    if (!cbs || typeof wrapped !== 'function') return;
    const direct: DeliveryCb = (err, report) => { if (err) wrapped(err, report); else this.onReport(null, report); };
    direct.dr_msg_cb = false;
    cbs.delivery_cb = direct;
  }

  private queueOf(topic: string, partition: number): PartitionQueue {
    let qs = this.queues.get(topic);
    if (!qs) this.queues.set(topic, (qs = []));
    return (qs[partition] ??= { runs: [], head: 0, lastOffset: -1 });
  }

  send(batch: OutMessage[]): Promise<void> {
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise<void>((resolve, reject) => {
      const st: BatchState = { left: batch.length, resolve, reject, failed: false };
      if (batch.length === 0) { resolve(); return; }
      this.batches.add(st);
      let q: PartitionQueue | null = null;
      let qTopic = '';
      let qPartition = -1;
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i]!;
        const headers = m.headers ? Object.entries(m.headers).map(([k, v]) => ({ [k]: v })) : undefined;
        const partition = this.partitionOf(m);
        try {
          // A record with its partition known is acknowledged through its partition's queue (onReport), without
          // an opaque: node-rdkafka makes a V8 persistent handle for every opaque and takes it apart in the report.
          this.producer.produce(m.topic, partition, m.value, m.key, null, partition === null ? st : undefined, headers);
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
        if (partition === null) continue;
        if (q === null || partition !== qPartition || m.topic !== qTopic) {
          q = this.queueOf(m.topic, partition);
          qTopic = m.topic;
          qPartition = partition;
        }
        const tail = q.runs.length > q.head ? q.runs[q.runs.length - 1]! : null;
        if (tail && tail.st === st) tail.n += 1;
        else q.runs.push({ st, n: 1 });
      }
      if (!this.pollTimer) this.pollTimer = setInterval(() => this.poll(), 1);
    });
  }

  /**
   * The batch a report without opaque belongs to: the oldest run of its partition. With idempotence
   * librdkafka reports a partition's records in the order they were produced; the offsets are checked to
   * grow, so a report out of that order stops the capture instead of acknowledging the wrong batch.
   */
  private fromQueue(report: RdkReport): BatchState | null {
    const q = this.queues.get(report.topic)?.[report.partition];
    if (!q || q.head >= q.runs.length || (report.offset >= 0 && report.offset <= q.lastOffset)) {
      this.failAll(new UnavailableError('KAFKA_UNAVAILABLE', `librdkafka reported ${report.topic}/${report.partition} offset ${report.offset} out of produce order (last ${q?.lastOffset ?? 'none'})`));
      return null;
    }
    if (report.offset >= 0) q.lastOffset = report.offset;
    const run = q.runs[q.head]!;
    if (--run.n === 0) {
      q.head += 1;
      if (q.head === q.runs.length) { q.runs = []; q.head = 0; } else if (q.head >= 1024) { q.runs = q.runs.slice(q.head); q.head = 0; }
    }
    return run.st;
  }

  private onReport(err: RdkError | null, report: RdkReport): void {
    this.outstanding -= 1;
    if (this.outstanding === 0 && this.pollTimer) { clearInterval(this.pollTimer); this.pollTimer = null; }
    if (err) { if (!this.fatal) this.failAll(failure(err, `delivery to ${report.topic}`)); return; }
    const st = report.opaque ?? this.fromQueue(report);
    if (!st || st.failed) return;
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
