import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';

/** Drops a test's warehouse schemas and deletes its Redis keys (`<prefix>:*`); each part skipped when not set up. */
export async function dropTestWarehouse(wh: pg.Pool | undefined, schemas: WarehouseSchemas | undefined, redis: Redis, keyPrefix: string | undefined): Promise<void> {
  if (wh && schemas) {
    await wh.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
  }
  if (keyPrefix) {
    const keys = await redis.keys(`${keyPrefix}:*`);
    if (keys.length) await redis.del(...keys);
  }
}
