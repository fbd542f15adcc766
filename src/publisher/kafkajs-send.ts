import type { CompressionTypes, Message, Producer, RecordMetadata } from 'kafkajs';
import { UnavailableError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { Partitioners } from './kafkajs.ts';

/** Sends of the partitions kafkajs skipped, after the first, before the send fails (retriable). */
const MAX_RESENDS = 10;

type PartitionMetadata = { partitionId: number; leader: number; replicas: number[]; isr: number[]; partitionErrorCode: number }[];

/**
 * kafkajs 2.2.4 can resolve a sendBatch without having sent some of its
 * partitions. It keeps one response per broker across its retries
 * (producer/sendMessages.js): when a leader dies and its partitions move to
 * a broker that has already answered for its own part of the batch, the
 * retry sends nothing to that broker and the call succeeds (kafkajs#1303).
 * On three brokers the chaos suite lost order lines that way on a broker
 * SIGKILL, with the slot confirmed past them. A single broker cannot hit it.
 *
 * So every record gets an explicit partition (kafkajs' default partitioner
 * on the known partition count: the same partition kafkajs would pick), and
 * a partition the brokers did not answer for is sent again, its records in
 * their order, before the send counts as done. Nothing of a later batch is
 * in flight meanwhile (one send at a time), so per-key order holds; a record
 * that did reach the dead leader is deduplicated by the idempotent producer,
 * which reuses its sequence numbers.
 */
export class EveryPartitionSender {
  private readonly partitions = new Map<string, PartitionMetadata>();
  private readonly partitioner = Partitioners.DefaultPartitioner();

  constructor(private readonly producer: Producer, private readonly log?: Logger) {}

  /** The topic has this many partitions; a topic never told is checked as a whole (some partition answered). */
  setPartitionCount(topic: string, count: number): void {
    this.partitions.set(topic, Array.from({ length: count }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 })));
  }

  /** Resolves once every partition of the batch has an answer from its leader (acks as given). Sets each record's `partition`. */
  async send(topicMessages: { topic: string; messages: Message[] }[], opts: { acks: number; compression?: CompressionTypes }): Promise<RecordMetadata[]> {
    let pending = this.byPartition(topicMessages);
    const answers: RecordMetadata[] = [];
    for (let attempt = 0; ; attempt++) {
      const res = await this.producer.sendBatch({
        acks: opts.acks, compression: opts.compression,
        topicMessages: [...pending.values()].map(({ topic, messages }) => ({ topic, messages })),
      });
      answers.push(...res);
      if (opts.acks === 0) return answers;
      const missing = unanswered(pending, res);
      if (missing.size === 0) return answers;
      const skipped = [...missing.values()].map((p) => `${p.topic}/${p.partition ?? '*'}`);
      if (attempt >= MAX_RESENDS) {
        throw new UnavailableError('KAFKA_UNAVAILABLE', `Kafka send left ${skipped.join(', ')} unanswered after ${attempt + 1} sends`);
      }
      this.log?.warn({ partitions: skipped, records: [...missing.values()].reduce((n, p) => n + p.messages.length, 0), attempt: attempt + 1 },
        'kafkajs reported a send done without sending these partitions (leader moved to a broker that had answered, kafkajs#1303); sending them again');
      pending = missing;
    }
  }

  /** The records by `topic/partition`, each with its explicit partition; `topic/*` for a topic of unknown partition count. */
  private byPartition(topicMessages: { topic: string; messages: Message[] }[]): Map<string, Pending> {
    const out = new Map<string, Pending>();
    for (const { topic, messages } of topicMessages) {
      const partitionMetadata = this.partitions.get(topic);
      for (const m of messages) {
        const partition = m.partition ?? (partitionMetadata ? this.partitioner({ topic, partitionMetadata, message: m }) : undefined);
        const k = `${topic}/${partition ?? '*'}`;
        let p = out.get(k);
        if (!p) out.set(k, (p = { topic, partition, messages: [] }));
        // Set in place, not copied: the callers build these records for the send (a backlog drain sends millions).
        if (partition !== undefined) m.partition = partition;
        p.messages.push(m);
      }
    }
    return out;
  }
}

interface Pending { topic: string; partition: number | undefined; messages: Message[] }

/** The pending partitions no answer names (a topic of unknown partition count: none of its partitions answered). */
export function unanswered(pending: Map<string, Pending>, res: Pick<RecordMetadata, 'topicName' | 'partition'>[]): Map<string, Pending> {
  const answered = new Set<string>();
  for (const r of res) {
    answered.add(`${r.topicName}/${r.partition}`);
    answered.add(`${r.topicName}/*`);
  }
  return new Map([...pending].filter(([k]) => !answered.has(k)));
}
