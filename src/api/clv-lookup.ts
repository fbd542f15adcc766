import type { Logger } from '../logger.ts';
import type { ClvPostgres } from './clv-pg.ts';
import type { ClvRecord } from './clv-record.ts';
import type { ApiMetrics } from './metrics.ts';

/** The Redis side of a lookup (src/api/clv-store.ts). Rejects when Redis is down, slow or holds an unreadable entry. */
export interface ClvCache {
  get(customerId: string): Promise<ClvRecord | undefined>;
  /** Resolves when Redis answers a PING within the lookup timeout. */
  ping(): Promise<void>;
}

export interface Found {
  record: ClvRecord;
  source: 'redis' | 'postgres';
}

/**
 * Redis first, Postgres when Redis has no key for the customer or cannot
 * answer. Postgres is the source of truth, so a Redis failure costs latency,
 * never an error response; a Postgres failure is the only one that surfaces.
 */
export class ClvLookup {
  /** Logged on the transitions only: at thousands of lookups a second, one line per failure would drown the log. */
  private redisFailing = false;

  constructor(
    private readonly cache: ClvCache,
    private readonly pg: ClvPostgres,
    private readonly metrics: ApiMetrics,
    private readonly log: Logger,
  ) {}

  async find(customerId: string): Promise<Found | undefined> {
    let reason: 'miss' | 'redis_error';
    try {
      const hit = await this.cache.get(customerId);
      this.redisRecovered();
      if (hit) {
        this.metrics.redisHit.value++;
        return { record: hit, source: 'redis' };
      }
      this.metrics.redisMiss.value++;
      reason = 'miss';
    } catch (err) {
      this.metrics.redisError.value++;
      if (!this.redisFailing) {
        this.redisFailing = true;
        this.log.warn({ err }, 'Redis lookup failed; answering from Postgres until it recovers');
      }
      reason = 'redis_error';
    }
    (reason === 'miss' ? this.metrics.fallbackMiss : this.metrics.fallbackRedisError).value++;
    const record = await this.pg.byId(customerId);
    return record && { record, source: 'postgres' };
  }

  private redisRecovered(): void {
    if (this.redisFailing) {
      this.redisFailing = false;
      this.log.info('Redis lookups work again');
    }
  }
}
