import type { Admin } from 'kafkajs';

/**
 * Auto-creation is off on our brokers (docs/CONVENTIONS.md), so whoever
 * touches the clickstream topic first creates it: the generator when it
 * produces, the consumer before it subscribes. An existing topic is left
 * as it is (its partition count is not changed: that would move keys).
 */
export async function ensureTopic(admin: Admin, topic: string, partitions: number): Promise<void> {
  const existing = await admin.listTopics();
  if (existing.includes(topic)) return;
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true }).catch((err: Error) => {
    if (!/already exists/i.test(err.message)) throw err;
  });
}
