import type { Redis } from 'ioredis';
import type pg from 'pg';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stackEnv } from './stack-env.ts';

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

/** A test's own warehouse: schemas `<id>_stg|_an|_wmeta`, migrated, a pool on them and the settings a consumer child needs for it. */
export interface TestWarehouse {
  schemas: WarehouseSchemas;
  pool: pg.Pool;
  group: string;
  /** Stack URLs, topic prefix, source schema, group, warehouse schemas and Redis key prefix (`<id>:`), for a consumer's env. */
  env: Record<string, string>;
}

/**
 * Migrates the schemas before returning (a consumer child migrates too, idempotently),
 * so a test can read the offsets table from the start. Dropped by dropTestWarehouse.
 */
export async function createTestWarehouse(id: string, opts: { kafkaBrokers?: string[]; poolSize?: number } = {}): Promise<TestWarehouse> {
  const schemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_wmeta` };
  const pool = createWarehousePool(stackEnv.warehouseUrl, opts.poolSize ?? 4);
  await migrate(pool, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
  const group = `${id}_wh`;
  return {
    schemas,
    pool,
    group,
    env: {
      WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, KAFKA_BROKERS: (opts.kafkaBrokers ?? stackEnv.kafkaBrokers).join(','),
      SCHEMA_REGISTRY_URL: stackEnv.registryUrl, REDIS_URL: stackEnv.redisUrl,
      TOPIC_PREFIX: id, SOURCE_SCHEMA: id, CONSUMER_GROUP: group,
      STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta, REDIS_KEY_PREFIX: `${id}:`,
    },
  };
}
