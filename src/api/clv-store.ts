import { clvKey } from '../sinks/redis/clv-redis.ts';
import type { RedisClient } from '../sinks/redis/redis-client.ts';
import { formatInstantUs, parseInstantUs } from '../transforms/time.ts';
import type { ClvCache } from './clv-lookup.ts';
import type { ClvRecord } from './clv-record.ts';

/**
 * Reads the CLV hashes the warehouse consumer writes (src/sinks/redis/
 * clv-redis.ts and clv-write.lua own the layout): key `<prefix>clv:<id>`, a
 * hash of the customer_lifetime_value columns as text (money as exact
 * decimal strings, instants as µs UTC ISO) plus `version`; a null column is
 * an absent field. A removed customer has no hash (only a
 * `<prefix>clv-deleted:<id>` marker), which reads as a miss, so Postgres
 * decides. The API never writes Redis: only version-guarded writers do.
 * On a Redis Cluster the key is the tagged one (`<prefix>clv:{<id>}`), read
 * through the cluster client from the master that owns its slot.
 */
export class RedisClvStore implements ClvCache {
  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
  ) {}

  async get(customerId: string): Promise<ClvRecord | undefined> {
    const h = await this.redis.hgetall(clvKey(this.keyPrefix, customerId, this.redis.isCluster));
    if (h.version === undefined) return undefined;
    return parseClvHash(customerId, h);
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }
}

const DECIMAL = /^-?\d+(\.\d+)?$/;
const INTEGER = /^-?\d+$/;

/** Thrown for a hash that does not hold a readable CLV row; the lookup then asks Postgres. */
export class UnreadableEntryError extends Error {}

export function parseClvHash(customerId: string, h: Record<string, string>): ClvRecord {
  const need = (field: string, re?: RegExp): string => {
    const v = h[field];
    if (v === undefined || (re && !re.test(v))) {
      throw new UnreadableEntryError(`Redis CLV entry of customer ${customerId}: field ${field} is ${v === undefined ? 'missing' : `"${v}"`}`);
    }
    return v;
  };
  const instant = (field: string): string => {
    const us = parseInstantUs(need(field));
    if (us === undefined) throw new UnreadableEntryError(`Redis CLV entry of customer ${customerId}: ${field} is not an instant`);
    return formatInstantUs(us);
  };
  if (h.customer_id !== undefined && h.customer_id !== customerId) {
    throw new UnreadableEntryError(`Redis CLV entry under customer ${customerId} names customer ${h.customer_id}`);
  }
  return {
    customerId,
    customerKey: h.customer_key ?? null,
    customerSegment: h.customer_segment ?? null,
    totalOrders: Number(need('total_orders', INTEGER)),
    totalItems: Number(need('total_items', INTEGER)),
    totalRevenue: need('total_revenue', DECIMAL),
    avgOrderValue: need('avg_order_value', DECIMAL),
    firstOrderDate: instant('first_order_date'),
    lastOrderDate: instant('last_order_date'),
    customerLifetimeDays: Number(need('customer_lifetime_days', INTEGER)),
    valueSegment: need('value_segment'),
    frequencySegment: need('frequency_segment'),
    version: need('version', INTEGER),
  };
}
