import type { Admin } from 'kafkajs';
import { createTopicsReady, type TopicReadyOptions } from '../../src/publisher/topic-ready.ts';

/**
 * Auto-creation is off on our brokers (docs/CONVENTIONS.md), so whoever
 * touches the clickstream topic first creates it: the generator when it
 * produces, the consumer before it subscribes. An existing topic is left
 * as it is (its partition count is not changed: that would move keys).
 */
export async function ensureTopic(admin: Admin, topic: string, partitions: number, o: TopicReadyOptions = {}): Promise<void> {
  // Created or not, wait until its leaders serve it before producing or subscribing (src/publisher/topic-ready.ts).
  await createTopicsReady(admin, [{ topic, numPartitions: partitions }], o);
}
