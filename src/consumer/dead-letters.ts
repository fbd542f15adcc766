import kafkajs, { type Admin, type IHeaders, type KafkaMessage, type Message, type Producer } from 'kafkajs';
import { EveryPartitionSender } from '../publisher/kafkajs-send.ts';
import { createTopicsReady } from '../publisher/topic-ready.ts';
import type { TopicReplication } from '../config/index.ts';
import type { Logger } from '../logger.ts';
import type { DeadLetterNote } from '../sinks/postgres/consumer-progress.ts';

/**
 * Sends undecodable or invalid messages to `<topic>.dlq` with their original
 * key, value and headers, plus headers naming the error and where the
 * message came from. The send is acknowledged by all replicas before the
 * batch that skips the message commits, so nothing is dropped; a crash in
 * between can send it twice (the dead_letters table records it once).
 *
 * Dead letters never crash the consumer (docs/consumers.md, "Dead
 * letters"): a partition's bad messages are sent in chunks that each stay
 * under the DLQ topic's `max.message.bytes` (read once per topic with
 * DescribeConfigs, 1 MiB when it cannot be read), and a single record too
 * large for the topic on its own is not sent: its key, value and headers go
 * into `<meta>.dead_letters` with its coordinates, in the batch's own
 * transaction, and the topic gets a small note record pointing there.
 */
export const dlqTopicOf = (topic: string) => `${topic}.dlq`;

export interface DeadLetterItem {
  message: KafkaMessage;
  error: string;
}

/** Broker default of message.max.bytes (1 MiB + 12 bytes of log overhead), used when the topic's limit cannot be read. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;
/** Record-batch header (v2) plus room for the produce request's own framing. */
const BATCH_OVERHEAD = 61 + 512;
/** Per-record framing in a v2 batch: attributes, varint deltas and lengths (generous). */
const RECORD_OVERHEAD = 32;
const HEADER_OVERHEAD = 10;

export function estimateRecordBytes(m: Pick<Message, 'key' | 'value' | 'headers'>): number {
  let n = RECORD_OVERHEAD + byteLen(m.key) + byteLen(m.value);
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    n += HEADER_OVERHEAD + Buffer.byteLength(k);
    for (const x of Array.isArray(v) ? v : [v]) n += byteLen(x as Buffer | string | null | undefined);
  }
  return n;
}

function byteLen(v: Buffer | string | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'string' ? Buffer.byteLength(v) : v.length;
}

/**
 * Splits records into consecutive chunks whose estimated batch size stays
 * under `maxBytes`; a record that cannot fit even alone is returned in
 * `oversized` (by index) instead. Order is kept within and across chunks.
 */
export function planChunks(sizes: readonly number[], maxBytes: number): { chunks: number[][]; oversized: number[] } {
  const budget = maxBytes - BATCH_OVERHEAD;
  const chunks: number[][] = [];
  const oversized: number[] = [];
  let cur: number[] = [];
  let bytes = 0;
  sizes.forEach((size, i) => {
    if (size > budget) {
      oversized.push(i);
      return;
    }
    if (cur.length > 0 && bytes + size > budget) {
      chunks.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(i);
    bytes += size;
  });
  if (cur.length > 0) chunks.push(cur);
  return { chunks, oversized };
}

export interface DeadLetterWriterOptions {
  /** Where oversized records are kept, for the note record ("cdc_meta.dead_letters"). */
  keptIn?: string;
  /** Overrides the topic's limit (tests, or a broker whose configs cannot be described). */
  maxMessageBytes?: number;
  /** Ends the wait for the DLQ topic when the consumer stops. */
  signal?: AbortSignal;
  /** Replication of a DLQ topic this creates (KAFKA_TOPIC_*; default from the cluster). */
  replication?: TopicReplication;
}

export class DeadLetterWriter {
  private readonly ensured = new Set<string>();
  private readonly limits = new Map<string, number>();
  private readonly sender: EveryPartitionSender;

  constructor(
    producer: Producer,
    private readonly admin: Admin,
    private readonly log: Logger,
    private readonly opts: DeadLetterWriterOptions = {},
  ) {
    // A dead letter a leader change dropped would be a message lost: see EveryPartitionSender.
    this.sender = new EveryPartitionSender(producer, log);
  }

  /** Auto-creation is off on our brokers: create the topic (broker-default partitions; replication as configured, src/publisher/topic-ready.ts) on first use, and wait until it is served. */
  private async ensureTopic(topic: string): Promise<void> {
    if (this.ensured.has(topic)) return;
    await createTopicsReady(this.admin, [{ topic }], { log: this.log, signal: this.opts.signal, replication: this.opts.replication });
    const md = await this.admin.fetchTopicMetadata({ topics: [topic] });
    const partitions = md.topics[0]?.partitions.length;
    if (partitions) this.sender.setPartitionCount(topic, partitions);
    this.ensured.add(topic);
  }

  /** The topic's max.message.bytes (the broker's message.max.bytes when the topic does not override it). */
  private async limitOf(topic: string): Promise<number> {
    if (this.opts.maxMessageBytes) return this.opts.maxMessageBytes;
    const known = this.limits.get(topic);
    if (known) return known;
    let limit = DEFAULT_MAX_MESSAGE_BYTES;
    try {
      const res = await this.admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic, configNames: ['max.message.bytes'] }],
      });
      const v = Number(res.resources[0]?.configEntries.find((e) => e.configName === 'max.message.bytes')?.configValue);
      if (Number.isFinite(v) && v > 0) limit = v;
    } catch (err) {
      this.log.warn({ topic, err: (err as Error).message, limit }, 'cannot read the dead-letter topic\'s max.message.bytes; assuming the broker default');
    }
    this.limits.set(topic, limit);
    return limit;
  }

  /** Sends and returns the DLQ topic name (for callers that build their notes themselves). */
  async send(topic: string, partition: number, items: DeadLetterItem[]): Promise<string> {
    await this.write(topic, partition, items);
    return dlqTopicOf(topic);
  }

  /**
   * Sends the items (chunked under the topic's limit) and returns one note
   * per item for the batch transaction; the note of an oversized record
   * carries its bytes, to be kept in `dead_letters`.
   */
  async write(topic: string, partition: number, items: DeadLetterItem[]): Promise<DeadLetterNote[]> {
    const dlq = dlqTopicOf(topic);
    if (items.length === 0) return [];
    await this.ensureTopic(dlq);
    const limit = await this.limitOf(dlq);
    const records: Message[] = items.map(({ message, error }) => ({
      key: message.key, value: message.value, timestamp: message.timestamp,
      headers: {
        ...(message.headers ?? {}),
        'dlq.error': error.slice(0, 2000),
        'dlq.source.topic': topic,
        'dlq.source.partition': String(partition),
        'dlq.source.offset': message.offset,
      } satisfies IHeaders,
    }));
    const notes: DeadLetterNote[] = items.map(({ message, error }) => ({ offset: message.offset, dlqTopic: dlq, error }));
    const { oversized } = planChunks(records.map(estimateRecordBytes), limit);
    const tooLarge = new Set(oversized);
    // An oversized record's place in the topic is taken by a small note, so the order stays the source's.
    const outgoing = records.map((r, i) => (tooLarge.has(i) ? this.noteRecord(topic, partition, items[i]!, r) : r));
    const { chunks } = planChunks(outgoing.map(estimateRecordBytes), limit);
    for (const chunk of chunks) await this.sender.send([{ topic: dlq, messages: chunk.map((i) => outgoing[i]!) }], { acks: -1 });
    for (const i of tooLarge) {
      const m = items[i]!.message;
      notes[i] = {
        ...notes[i]!,
        error: `${notes[i]!.error} (record of ${estimateRecordBytes(records[i]!)} bytes is larger than ${dlq}'s max.message.bytes ${limit}; kept in dead_letters)`,
        kept: { key: m.key ?? null, value: m.value ?? null, headers: plainHeaders(m.headers) },
      };
    }
    this.log.warn({ topic, partition, count: items.length, sends: chunks.length, keptInTable: tooLarge.size, first: items[0]!.error }, 'messages sent to the dead-letter topic');
    return notes;
  }

  /** The small record that stands in the DLQ for one kept in the table. */
  private noteRecord(topic: string, partition: number, item: DeadLetterItem, record: Message): Message {
    const bytes = estimateRecordBytes(record);
    const value = JSON.stringify({
      note: 'record too large for the dead-letter topic; its key, value and headers are kept in the warehouse',
      keptIn: this.opts.keptIn ?? 'dead_letters', topic, partition, offset: item.message.offset, bytes,
    });
    const key = byteLen(item.message.key) <= 1024 ? item.message.key : null;
    return {
      key, value, timestamp: item.message.timestamp,
      headers: {
        'dlq.error': item.error.slice(0, 2000),
        'dlq.source.topic': topic,
        'dlq.source.partition': String(partition),
        'dlq.source.offset': item.message.offset,
        'dlq.kept-in': this.opts.keptIn ?? 'dead_letters',
        'dlq.original-bytes': String(bytes),
      },
    };
  }
}

function plainHeaders(h: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined) continue;
    out[k] = (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('base64') : String(x))).join(',');
  }
  return out;
}
