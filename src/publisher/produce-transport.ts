import type { Kafka as KafkaClient } from 'kafkajs';
import { KafkaRefusedError, UnavailableError } from '../errors.ts';
import { classify } from '../lifecycle/classify.ts';
import type { Endpoint } from '../lifecycle/endpoints.ts';
import { CompressionTypes, Partitioners, type Message, type Producer } from './kafkajs.ts';
import { EveryPartitionSender } from './kafkajs-send.ts';
import type { Logger } from '../logger.ts';
import type { OutMessage } from './kafka-publisher.ts';

/**
 * The part of the publisher that hands records to Kafka: kafkajs or
 * librdkafka (CAPTURE_PRODUCER, docs/capture.md "Producer"). Buffering,
 * water marks and acknowledgement order stay in KafkaPublisher; a transport
 * only sends one batch and says when the broker has it (acks=all).
 */
export interface ProduceTransport {
  readonly name: 'kafkajs' | 'rdkafka';
  /** Batches the publisher may have in flight at once. */
  readonly maxInFlight: number;
  connect(): Promise<void>;
  /** The publisher made `topic` ready and it has this many partitions: both transports set each record's partition from it. */
  topicReady?(topic: string, partitions: number): void;
  /** Resolves once every record of `batch` is acknowledged by Kafka; rejects with a CdcError when it cannot be. */
  send(batch: OutMessage[]): Promise<void>;
  close(): Promise<void>;
}

/** A send failure in the project's terms: a refusal on the merits is fatal, the broker being away is retriable. */
export function sendFailure(err: unknown, via: Endpoint | undefined): UnavailableError | KafkaRefusedError {
  const c = classify(err, { via });
  return c.retriable
    ? new UnavailableError('KAFKA_UNAVAILABLE', `Kafka send failed after retries: ${c.error.message}`, { cause: err })
    : new KafkaRefusedError(`Kafka refused a send: ${c.error.message}`, { cause: err });
}

/**
 * kafkajs' idempotent producer, one send at a time. kafkajs serialises
 * idempotent requests per broker anyway, and on a retriable error it hands
 * the failed batch's sequence numbers back before retrying; a second send
 * queued behind it would take them and overtake the failed batch, reordering
 * a key. Throughput comes from batch size instead (group commit). Sends go
 * through EveryPartitionSender: kafkajs alone can skip a partition whose
 * leader moved during the send.
 */
export class KafkajsTransport implements ProduceTransport {
  readonly name = 'kafkajs' as const;
  readonly maxInFlight = 1;
  private readonly producer: Producer;
  private readonly sender: EveryPartitionSender;

  constructor(kafka: KafkaClient, private readonly via?: Endpoint, log?: Logger) {
    // kafkajs 2's default, named: RdkafkaTransport computes keyed partitions with the same function.
    this.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    this.sender = new EveryPartitionSender(this.producer, log);
  }

  topicReady(topic: string, partitions: number): void {
    this.sender.setPartitionCount(topic, partitions);
  }

  async connect(): Promise<void> {
    await this.producer.connect();
  }

  async send(batch: OutMessage[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const m of batch) {
      let list = byTopic.get(m.topic);
      if (!list) byTopic.set(m.topic, (list = []));
      list.push({ key: m.key, value: m.value, headers: m.headers });
    }
    try {
      await this.sender.send([...byTopic].map(([topic, messages]) => ({ topic, messages })), { acks: -1, compression: CompressionTypes.None });
    } catch (err) {
      throw sendFailure(err, this.via);
    }
  }

  async close(): Promise<void> {
    await this.producer.disconnect().catch(() => {});
  }
}
