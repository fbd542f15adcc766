import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from '../../logger.ts';
import { clvPayloadSql } from '../postgres/derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../postgres/pool.ts';

/**
 * CLV figures in Redis, written from the Postgres outbox after the batch
 * that produced them committed. Redis being down only delays this: the
 * outbox keeps the work, and the next flush (after any later batch or on the
 * consumer's retry timer) repairs Redis; a lost Redis is refilled by
 * `npm run redis:rebuild` (src/api/clv-rebuild.ts). Keys: `<prefix>clv:<customer_id>`, a
 * hash of the customer_lifetime_value columns plus `version`.
 */
const SCRIPT = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'clv-write.lua'), 'utf8');

export const clvKey = (prefix: string, customerId: string) => `${prefix}clv:${customerId}`;
export const clvDeletedKey = (prefix: string, customerId: string) => `${prefix}clv-deleted:${customerId}`;

type ClvRedis = Redis & { clvWrite(k1: string, k2: string, ...args: string[]): Promise<number> };

function withScript(redis: Redis): ClvRedis {
  const r = redis as ClvRedis;
  if (typeof r.clvWrite !== 'function') redis.defineCommand('clvWrite', { numberOfKeys: 2, lua: SCRIPT });
  return r;
}

interface OutboxRow {
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
  private readonly redis: ClvRedis;
  private flushing: Promise<number> | undefined;

  constructor(
    redis: Redis,
    private readonly pool: pg.Pool,
    private readonly schemas: WarehouseSchemas,
    private readonly keyPrefix: string,
    private readonly log: Logger,
  ) {
    this.redis = withScript(redis);
  }

  /** Flushes the outbox; concurrent callers share one run. Returns rows left (0 when Redis is caught up). Never throws. */
  flush(): Promise<number> {
    this.flushing ??= this.flushAll().finally(() => {
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
        const pipe = this.redis.pipeline();
        for (const r of rows) {
          (pipe as unknown as { clvWrite(...a: string[]): void }).clvWrite(clvKey(this.keyPrefix, r.customer_id), clvDeletedKey(this.keyPrefix, r.customer_id), ...args(r));
        }
        const results = await pipe.exec();
        const failed = results?.find(([err]) => err);
        if (!results || failed) throw failed?.[0] ?? new Error('redis pipeline returned nothing');
        await this.pool.query(`DELETE FROM ${meta}.redis_outbox WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
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
