import type { Consumer } from 'kafkajs';
import type { BatchObserver } from '../health/consumer-metrics.ts';
import type { Endpoint } from '../lifecycle/endpoints.ts';
import type { RetentionGapPolicy } from './stored-offsets.ts';

/** What a process wires into a consumer group member of any group: metrics, health, gaps, fatal errors. */
export interface GroupMemberHooks {
  /** Told of every applied transaction (metrics: messages, latency, freshness). */
  observer?: BatchObserver;
  /** Called with the kafkajs consumer once created (health: group membership events). */
  onConsumer?: (consumer: Consumer) => void;
  /** A stored offset behind the log start: pause the partition (stop, default) or apply on (continue). CONSUMER_ON_RETENTION_GAP. */
  onRetentionGap?: RetentionGapPolicy;
  /** Where a failure that ends the consumer goes (runMain's ctx.fatal), so the process never stays idle. */
  onFatal?: (err: Error) => void;
  endpoints?: Endpoint[];
}
