import type { Admin, IHeaders, KafkaMessage, Producer } from 'kafkajs';
import type { Logger } from '../logger.ts';

/**
 * Sends undecodable or invalid messages to `<topic>.dlq` with their original
 * key, value and headers, plus headers naming the error and where the
 * message came from. The send is acknowledged by all replicas before the
 * batch that skips the message commits, so nothing is dropped; a crash in
 * between can send it twice (the dead_letters table records it once).
 */
export const dlqTopicOf = (topic: string) => `${topic}.dlq`;

export class DeadLetterWriter {
  private readonly ensured = new Set<string>();

  constructor(
    private readonly producer: Producer,
    private readonly admin: Admin,
    private readonly log: Logger,
  ) {}

  /** Auto-creation is off on our brokers: create the topic (broker-default partitions and replication) on first use. */
  private async ensureTopic(topic: string): Promise<void> {
    if (this.ensured.has(topic)) return;
    const existing = await this.admin.listTopics();
    if (!existing.includes(topic)) {
      await this.admin.createTopics({ topics: [{ topic }], waitForLeaders: true }).catch((err: Error) => {
        if (!/already exists/i.test(err.message)) throw err;
      });
    }
    this.ensured.add(topic);
  }

  async send(topic: string, partition: number, items: Array<{ message: KafkaMessage; error: string }>): Promise<string> {
    const dlq = dlqTopicOf(topic);
    if (items.length === 0) return dlq;
    await this.ensureTopic(dlq);
    await this.producer.send({
      topic: dlq,
      acks: -1,
      messages: items.map(({ message, error }) => {
        const headers: IHeaders = {
          ...(message.headers ?? {}),
          'dlq.error': error.slice(0, 2000),
          'dlq.source.topic': topic,
          'dlq.source.partition': String(partition),
          'dlq.source.offset': message.offset,
        };
        return { key: message.key, value: message.value, headers, timestamp: message.timestamp };
      }),
    });
    this.log.warn({ topic, partition, count: items.length, first: items[0]!.error }, 'messages sent to the dead-letter topic');
    return dlq;
  }
}
