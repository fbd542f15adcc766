import type { Socket } from 'node:net';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../sinks/redis/redis-client.ts';
import { clvKey } from '../sinks/redis/clv-redis.ts';
import type { ClvCache } from './clv-lookup.ts';
import type { ClvRecord } from './clv-record.ts';
import { readInstant } from './instant.ts';

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
  private corked: Socket | undefined;
  private readonly uncork = () => {
    this.corked?.uncork();
    this.corked = undefined;
  };

  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
  ) {}

  async get(customerId: string): Promise<ClvRecord | undefined> {
    this.batchWrites();
    // HMGET of the fields the API reads, not HGETALL: ioredis turns an HGETALL
    // reply into an object field by field, and the API has no use for fields
    // it does not know.
    const values = await this.redis.hmget(clvKey(this.keyPrefix, customerId, this.redis.isCluster), ...CLV_FIELDS);
    if (values[VERSION] === null) return undefined;
    return parseClvFields(customerId, values);
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  /**
   * Lookups that arrive in the same turn of the event loop (requests read
   * from several connections at once) go to Redis in one socket write: the
   * socket is corked at the first and uncorked once the turn's I/O is done
   * (setImmediate). Each lookup is still its own command with its own
   * timeout and error, and Redis answers them in one read. A write syscall
   * per lookup was the largest single cost under load; ioredis's
   * auto-pipelining batches the same way but builds a Pipeline per batch,
   * which measured more CPU per lookup than it saved (docs/api.md).
   */
  private batchWrites(): void {
    // A cluster client writes to one socket per master; it has no single stream to cork.
    if (this.corked !== undefined || this.redis.isCluster) return;
    // Undefined until the first connect; after a reconnect, the new socket.
    const stream = (this.redis as Redis).stream as Socket | undefined;
    if (stream === undefined || !stream.writable) return;
    stream.cork();
    this.corked = stream;
    setImmediate(this.uncork);
  }
}

/** The hash fields of a CLV entry, in the order of HMGET's answer. */
export const CLV_FIELDS = [
  'customer_id', 'customer_key', 'customer_segment', 'total_orders', 'total_items', 'total_revenue', 'avg_order_value',
  'first_order_date', 'last_order_date', 'customer_lifetime_days', 'value_segment', 'frequency_segment', 'version',
] as const;
type ClvField = (typeof CLV_FIELDS)[number];
const INDEX = Object.fromEntries(CLV_FIELDS.map((f, i) => [f, i])) as Record<ClvField, number>;
const VERSION = INDEX.version;

const DECIMAL = /^-?\d+(\.\d+)?$/;
const INTEGER = /^-?\d+$/;

/** Thrown for a hash that does not hold a readable CLV row; the lookup then asks Postgres. */
export class UnreadableEntryError extends Error {}

function need(customerId: string, values: readonly (string | null)[], field: ClvField, re?: RegExp): string {
  const v = values[INDEX[field]] ?? undefined;
  if (v === undefined || (re && !re.test(v))) {
    throw new UnreadableEntryError(`Redis CLV entry of customer ${customerId}: field ${field} is ${v === undefined ? 'missing' : `"${v}"`}`);
  }
  return v;
}

function instant(customerId: string, values: readonly (string | null)[], field: ClvField): string {
  const read = readInstant(need(customerId, values, field));
  if (read === undefined) throw new UnreadableEntryError(`Redis CLV entry of customer ${customerId}: ${field} is not an instant`);
  return read.text;
}

/**
 * A CLV entry from HMGET of CLV_FIELDS (null: the field is absent). The
 * helpers are module functions, not closures: a closure per field per
 * lookup is an allocation the hot path does not need.
 */
export function parseClvFields(customerId: string, values: readonly (string | null)[]): ClvRecord {
  const storedId = values[INDEX.customer_id];
  if (storedId != null && storedId !== customerId) {
    throw new UnreadableEntryError(`Redis CLV entry under customer ${customerId} names customer ${storedId}`);
  }
  const id = customerId;
  return {
    customerId,
    customerKey: values[INDEX.customer_key] ?? null,
    customerSegment: values[INDEX.customer_segment] ?? null,
    totalOrders: Number(need(id, values, 'total_orders', INTEGER)),
    totalItems: Number(need(id, values, 'total_items', INTEGER)),
    totalRevenue: need(id, values, 'total_revenue', DECIMAL),
    avgOrderValue: need(id, values, 'avg_order_value', DECIMAL),
    firstOrderDate: instant(id, values, 'first_order_date'),
    lastOrderDate: instant(id, values, 'last_order_date'),
    customerLifetimeDays: Number(need(id, values, 'customer_lifetime_days', INTEGER)),
    valueSegment: need(id, values, 'value_segment'),
    frequencySegment: need(id, values, 'frequency_segment'),
    version: need(id, values, 'version', INTEGER),
  };
}
