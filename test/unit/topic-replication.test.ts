import { describe, expect, it } from 'vitest';
import { loadStackConfig, loadTopicReplication } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { minInsyncFor } from '../../src/publisher/topic-ready.ts';

describe('topic replication settings', () => {
  it('follow the cluster unless set', () => {
    expect(loadTopicReplication({})).toEqual({ factor: null, minInsync: null });
    expect(loadTopicReplication({ KAFKA_TOPIC_REPLICATION_FACTOR: '3', KAFKA_TOPIC_MIN_INSYNC_REPLICAS: '2' })).toEqual({ factor: 3, minInsync: 2 });
  });

  it('refuse a min ISR above the replication factor, with one line naming both', () => {
    expect(() => loadTopicReplication({ KAFKA_TOPIC_REPLICATION_FACTOR: '2', KAFKA_TOPIC_MIN_INSYNC_REPLICAS: '3' })).toThrow(ConfigError);
    expect(() => loadTopicReplication({ KAFKA_TOPIC_REPLICATION_FACTOR: '0' })).toThrow(/^KAFKA_TOPIC_REPLICATION_FACTOR must be >= 1/);
    expect(() => loadTopicReplication({ KAFKA_TOPIC_MIN_INSYNC_REPLICAS: 'two' })).toThrow(/^KAFKA_TOPIC_MIN_INSYNC_REPLICAS must be an integer/);
  });

  it('keeps one replica fewer in sync than there are, at least 1 and at most 2, and never more than the replicas', () => {
    expect([1, 2, 3, 5].map((f) => minInsyncFor(f, undefined))).toEqual([1, 1, 2, 2]);
    expect(minInsyncFor(3, { factor: null, minInsync: 3 })).toBe(3);
    // A topic created with an explicit factor of 1 on a cluster configured for 2 in sync still accepts writes.
    expect(minInsyncFor(1, { factor: 3, minInsync: 2 })).toBe(1);
  });

  it('STACK_KAFKA_BROKERS=3 points KAFKA_BROKERS at the stack\'s three brokers; an explicit list still wins', () => {
    expect(loadStackConfig({ STACK_KAFKA_BROKERS: '3' }).kafkaBrokers).toEqual(['127.0.0.1:59092', '127.0.0.1:59094', '127.0.0.1:59096']);
    expect(loadStackConfig({ STACK_KAFKA_BROKERS: '3', STACK_KAFKA_PORT: '42500' }).kafkaBrokers).toEqual(['127.0.0.1:42500', '127.0.0.1:42502', '127.0.0.1:42504']);
    expect(loadStackConfig({ STACK_KAFKA_BROKERS: '3', KAFKA_BROKERS: 'k:9092' }).kafkaBrokers).toEqual(['k:9092']);
  });
});
