import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { Logger } from '../../logger.ts';
import { clvPayloadSql } from '../../../consumers/warehouse/derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../postgres/pool.ts';
import { scriptBatch, type RedisClient } from './redis-client.ts';

/**
 * CLV figures in Redis, written from the Postgres outbox after the batch
 * that produced them committed. Redis being down only delays this: the
 * outbox keeps the work, and the next flush (after any later batch or on the
 * consumer's retry timer) repairs Redis; a lost Redis is refilled by
 * `npm run redis:rebuild` (src/api/clv-rebuild.ts). Keys: `<prefix>clv:<customer_id>`, a
 * hash of the customer_lifetime_value columns plus `version`.
 *
 * On a Redis Cluster the id is a hash tag, `<prefix>clv:{<customer_id>}`
 * and `<prefix>clv-deleted:{<customer_id>}`: the write script reads and
 * writes both keys atomically, which a cluster allows only within one hash
 * slot, and the tag puts a customer's two keys in the same one while
 * different customers still spread over every master. A single Redis keeps
 * the untagged names it always had.
 */
const SCRIPT = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'clv-write.lua'), 'utf8');

const tag = (customerId: string, cluster: boolean) => (cluster ? `{${customerId}}` : customerId);
export const clvKey = (prefix: string, customerId: string, cluster = false) => `${prefix}clv:${tag(customerId, cluster)}`;
export const clvDeletedKey = (prefix: string, customerId: string, cluster = false) => `${prefix}clv-deleted:${tag(customerId, cluster)}`;

/** The customer id of a CLV hash key in either layout; undefined for a key that is not one. */
export function clvKeyId(prefix: string, key: string): string | undefined {
  const rest = key.startsWith(`${prefix}clv:`) ? key.slice(`${prefix}clv:`.length) : undefined;
  const id = rest?.replace(/^\{(.*)\}$/, '$1');
  return id !== undefined && /^\d{1,19}$/.test(id) ? id : undefined;
}

export function withClvWrite(redis: RedisClient): RedisClient {
  if (typeof (redis as unknown as { clvWrite?: unknown }).clvWrite !== 'function') redis.defineCommand('clvWrite', { numberOfKeys: 2, lua: SCRIPT });
  return redis;
}

/** The clvWrite arguments (both keys, then ARGV) for one customer. */
export function clvWriteArgs(redis: RedisClient, prefix: string, customerId: string, argv: string[]): string[] {
  return [clvKey(prefix, customerId, redis.isCluster), clvDeletedKey(prefix, customerId, redis.isCluster), ...argv];
}

export interface OutboxRow {
  id: string;
  customer_id: string;
  version: string;
  payload: Record<string, string | null> | null;
}

function args(row: { version: string; payload: Record<string, string | null> | null }): string[] {
  if (!row.payload) return [row.version, 'del'];
  const pairs = Object.entries(row.payload).flatMap(([k, v]) => (v === null ? [] : [k, v]));
  return [row.version, 'set', ...pairs];
}

export class ClvRedisSink {
  private readonly redis: RedisClient;
  private flushing: Promise<number> | undefined;
  private publishing: Promise<void> | undefined;
  private pending: OutboxRow[] = [];

  constructor(
    redis: RedisClient,
    private readonly pool: pg.Pool,
    private readonly schemas: WarehouseSchemas,
    private readonly keyPrefix: string,
    private readonly log: Logger,
  ) {
    this.redis = withClvWrite(redis);
  }

  /**
   * Writes outbox rows a transaction has just committed, in the background
   * and without reading them back: the consumer's next batch does not wait
   * for Redis. Written rows are then deleted from the outbox; on any failure
   * they stay there for `flush`, the same rows written twice are no-ops
   * (version guard), so this path only ever makes Redis fresher sooner.
   */
  publish(rows: readonly OutboxRow[]): void {
    if (rows.length === 0) return;
    this.pending.push(...rows);
    this.publishing ??= this.publishPending().finally(() => {
      this.publishing = undefined;
    });
  }

  /** Resolves when what `publish` was given has been attempted. */
  async published(): Promise<void> {
    while (this.publishing) await this.publishing;
  }

  private async publishPending(): Promise<void> {
    while (this.pending.length > 0) {
      const rows = this.pending.splice(0, 500);
      try {
        await this.write(rows);
      } catch (err) {
        this.pending = [];
        this.log.debug({ err: (err as Error).message }, 'redis publish failed; the outbox flush retries');
        return;
      }
    }
  }

  /** Writes outbox rows to Redis, then deletes them from the outbox (only once Redis has them). */
  private async write(rows: readonly OutboxRow[]): Promise<void> {
    // Replicated on a cluster before the outbox lets go of the rows (REPLICA_WAIT_MS).
    await scriptBatch(this.redis, 'clvWrite', rows.map((r) => clvWriteArgs(this.redis, this.keyPrefix, r.customer_id, args(r))), { replicated: true });
    const { meta } = quoted(this.schemas);
    await this.pool.query(`DELETE FROM ${meta}.redis_outbox WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
  }

  /** Flushes the outbox (after what `publish` has in flight); concurrent callers share one run. Returns rows left (0 when Redis is caught up). Never throws. */
  flush(): Promise<number> {
    this.flushing ??= this.published().then(() => this.flushAll()).finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flushAll(): Promise<number> {
    const { meta } = quoted(this.schemas);
    try {
      for (;;) {
        const { rows } = await this.pool.query<OutboxRow>(
          `SELECT id, customer_id, version, payload FROM ${meta}.redis_outbox WHERE key_prefix = $1 ORDER BY id LIMIT 500`, [this.keyPrefix]);
        if (rows.length === 0) return 0;
        await this.write(rows);
      }
    } catch (err) {
      const { rows } = await this.pool
        .query<{ n: string }>(`SELECT count(*) AS n FROM ${meta}.redis_outbox WHERE key_prefix = $1`, [this.keyPrefix])
        .catch(() => ({ rows: [{ n: '-1' }] }));
      this.log.warn({ err: (err as Error).message, pending: Number(rows[0]?.n) }, 'redis flush failed; outbox keeps the figures for the next attempt');
      return Math.max(1, Number(rows[0]?.n));
    }
  }
}
