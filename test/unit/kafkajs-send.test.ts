import { Partitioners, type Message, type Producer, type ProducerBatch, type RecordMetadata } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { EveryPartitionSender, unanswered } from '../../src/publisher/kafkajs-send.ts';

/**
 * EveryPartitionSender against a producer that answers as kafkajs 2.2.4 does
 * when a leader moves mid-send to a broker that had already answered: the
 * call resolves, and the moved partition is missing from the answers
 * (kafkajs#1303). What the real brokers do is the chaos suite's part.
 */
function skippingProducer(skipOnce: Set<string>): { producer: Producer; sent: { topic: string; partition: number; value: string }[] } {
  const sent: { topic: string; partition: number; value: string }[] = [];
  const producer = {
    async sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]> {
      const answers: RecordMetadata[] = [];
      for (const { topic, messages } of batch.topicMessages ?? []) {
        const parts = new Map<number, Message[]>();
        for (const m of messages) {
          expect(m.partition, 'every record has an explicit partition').toBeTypeOf('number');
          parts.set(m.partition!, [...(parts.get(m.partition!) ?? []), m]);
        }
        for (const [partition, ms] of parts) {
          if (skipOnce.delete(`${topic}/${partition}`)) continue;
          for (const m of ms) sent.push({ topic, partition, value: String(m.value) });
          answers.push({ topicName: topic, partition, errorCode: 0, baseOffset: '0' });
        }
      }
      return answers;
    },
  } as unknown as Producer;
  return { producer, sent };
}

describe('EveryPartitionSender', () => {
  it('sends a partition kafkajs skipped again, its records in order, and only that one', async () => {
    const { producer, sent } = skippingProducer(new Set(['t/1']));
    const sender = new EveryPartitionSender(producer);
    sender.setPartitionCount('t', 3);
    const messages = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}` }));
    await sender.send([{ topic: 't', messages }], { acks: -1 });
    expect(sent).toHaveLength(30);
    const p1 = sent.filter((s) => s.partition === 1);
    expect(p1.length).toBeGreaterThan(0);
    // Each key on one partition, in its order: the resend kept order within the partition.
    const byKey = new Map<string, number[]>();
    for (const s of sent) {
      const i = Number(s.value.slice(1));
      const k = `k${i % 7}`;
      byKey.set(k, [...(byKey.get(k) ?? []), i]);
    }
    for (const seq of byKey.values()) expect(seq).toEqual([...seq].sort((a, b) => a - b));
    expect(new Set(sent.map((s) => `${s.topic}/${s.partition}`)).size).toBe(3);
  });

  it('keeps kafkajs\' keyed partition and spreads keyless records; fails retriably when a partition never answers', async () => {
    const { producer, sent } = skippingProducer(new Set());
    const sender = new EveryPartitionSender(producer);
    sender.setPartitionCount('t', 4);
    await sender.send([{ topic: 't', messages: [{ key: 'a', value: '1' }, { key: 'a', value: '2' }, { key: null, value: '3' }, { key: null, value: '4' }] }], { acks: -1 });
    const partitionMetadata = Array.from({ length: 4 }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 }));
    const kafkajsPicks = Partitioners.DefaultPartitioner()({ topic: 't', partitionMetadata, message: { key: 'a', value: null } });
    expect(sent.filter((s) => s.value === '1' || s.value === '2').map((s) => s.partition)).toEqual([kafkajsPicks, kafkajsPicks]);
    expect(sent).toHaveLength(4);

    const never = { async sendBatch() { return []; } } as unknown as Producer;
    const stuck = new EveryPartitionSender(never);
    stuck.setPartitionCount('t', 2);
    await expect(stuck.send([{ topic: 't', messages: [{ key: 'a', value: '1' }] }], { acks: -1 })).rejects.toMatchObject({ code: 'KAFKA_UNAVAILABLE', retriable: true });
  });

  it('checks a topic of unknown partition count as a whole', () => {
    const pending = new Map([['u/*', { topic: 'u', partition: undefined, messages: [] }], ['t/0', { topic: 't', partition: 0, messages: [] }]]);
    expect([...unanswered(pending, [{ topicName: 'u', partition: 2 }]).keys()]).toEqual(['t/0']);
    expect([...unanswered(pending, [{ topicName: 't', partition: 0 }]).keys()]).toEqual(['u/*']);
  });
});
