import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What a consumer reports after each applied transaction (one group commit). */
export interface AppliedPart {
  topic: string;
  /** Messages the transaction moved the offset over (applied, tombstones and dead-lettered ones). */
  messages: number;
  /** Source commit time of the newest change in it (ms since the epoch), or null when it had none. */
  sourceMs: number | null;
}

/** The hook a consumer calls; ConsumerMetrics implements it. */
export interface BatchObserver {
  batchApplied(parts: readonly AppliedPart[], seconds: number): void;
}

/**
 * Prometheus metrics of a consumer group process (warehouse, clickstream),
 * on a registry of its own. Applied counts, latency and freshness come from
 * the consumer (BatchObserver); lag, dead letters and outbox depth from the
 * ConsumerProbe, which reads them where they are durable (Postgres offsets
 * against Kafka watermarks, `dead_letters`, `redis_outbox`).
 */
export class ConsumerMetrics implements BatchObserver {
  readonly registry = new Registry();
  private readonly lastSourceMs = new Map<string, number>();

  readonly lag = new Gauge({
    name: 'consumer_lag_messages', help: 'Messages in the topic-partition not yet applied: high watermark minus the offset stored in Postgres.',
    labelNames: ['group', 'topic', 'partition'] as const, registers: [this.registry],
  });
  readonly applied = new Counter({
    name: 'consumer_messages_applied_total', help: 'Messages applied (committed to Postgres with their offset), tombstones and dead-lettered ones included; rate() is messages/s.',
    labelNames: ['group', 'topic'] as const, registers: [this.registry],
  });
  readonly batchLatency = new Histogram({
    name: 'consumer_batch_apply_seconds', help: 'Time to apply one transaction of batches (decode excluded; staging, derived tables and offsets up to the commit).',
    labelNames: ['group'] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
  });
  readonly deadLetters = new Gauge({
    name: 'consumer_dead_letters', help: 'Messages of the group dead-lettered so far (rows of dead_letters), by source topic; their copies are in <topic>.dlq.',
    labelNames: ['group', 'topic'] as const, registers: [this.registry],
  });
  readonly outboxDepth = new Gauge({
    name: 'consumer_redis_outbox_depth', help: 'CLV rows committed in Postgres and not yet written to Redis (redis_outbox rows of the key prefix).',
    labelNames: ['group'] as const, registers: [this.registry],
  });
  readonly freshness: Gauge<'group' | 'topic'>;

  constructor(readonly group: string, now: () => number = Date.now) {
    collectDefaultMetrics({ register: this.registry });
    const sources = this.lastSourceMs;
    this.freshness = new Gauge({
      name: 'consumer_freshness_seconds', help: 'Now minus the source commit time of the last applied change, by topic (clickstream: the event\'s Kafka timestamp).',
      labelNames: ['group', 'topic'] as const, registers: [this.registry],
      collect() {
        const t = now();
        for (const [topic, ms] of sources) this.set({ group, topic }, Math.max(0, (t - ms) / 1000));
      },
    });
    this.batchLatency.zero({ group });
    this.outboxDepth.set({ group }, 0);
  }

  batchApplied(parts: readonly AppliedPart[], seconds: number): void {
    this.batchLatency.observe({ group: this.group }, seconds);
    for (const p of parts) {
      if (p.messages > 0) this.applied.inc({ group: this.group, topic: p.topic }, p.messages);
      if (p.sourceMs !== null && p.sourceMs > (this.lastSourceMs.get(p.topic) ?? 0)) this.lastSourceMs.set(p.topic, p.sourceMs);
    }
  }
}
