import { DEFAULT_PORTS, loadStackConfig } from '../config/index.ts';
import { bool, int, listenHost, optionalStr, str, type Env } from '../config/env.ts';
import type { RedisConnection } from '../config/redis.ts';
import { ConfigError } from '../errors.ts';
import { DEFAULT_RECENCY_THRESHOLDS, type RecencyThresholds } from './recency.ts';

export interface ApiConfig extends ClvStoreConfig {
  host: string;
  /** 0 picks a free port (tests); the bound URL is exposed by the service. */
  port: number;
  /** When set, every route but /healthz needs `Authorization: Bearer <token>`. */
  authToken: string | undefined;
  recency: RecencyThresholds;
  /**
   * A Redis lookup slower than this counts as Redis being unavailable and the
   * request goes to Postgres: a stalled cache must not stall the API.
   */
  redisTimeoutMs: number;
  /** Postgres statement_timeout for API queries. */
  pgStatementTimeoutMs: number;
  pgPoolMax: number;
  /** GET /customers/:id/clv on the node:http fast lane in front of Fastify (src/api/fast-lane.ts). */
  fastLane: boolean;
}

// Interpolated into SQL as an identifier, so held to a plain lower-case identifier.
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Where the CLV figures live: shared by the API and `redis:rebuild`. */
export interface ClvStoreConfig {
  warehouseUrl: string;
  redisUrl: string;
  /** The Redis URL plus ACL user and TLS files. */
  redis: RedisConnection;
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES), or null for the single Redis at redisUrl. */
  redisClusterNodes: string[] | null;
  /** Schema holding customer_lifetime_value; tests use their own. */
  analyticsSchema: string;
  /** Prefix of every Redis key the consumers write (must be theirs). */
  redisKeyPrefix: string;
}

export function loadClvStoreConfig(env: Env = process.env): ClvStoreConfig {
  const stack = loadStackConfig(env);
  const analyticsSchema = str(env, 'ANALYTICS_SCHEMA', 'analytics');
  if (!SCHEMA_NAME.test(analyticsSchema)) {
    throw new ConfigError(`ANALYTICS_SCHEMA must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, max 63), got "${analyticsSchema}"`);
  }
  // Read exactly as the consumers read it (consumers/warehouse/config.ts), or the two would look at different keys.
  const redisKeyPrefix = optionalStr(env, 'REDIS_KEY_PREFIX') ?? DEFAULT_REDIS_KEY_PREFIX;
  if (/\s/.test(redisKeyPrefix)) throw new ConfigError('REDIS_KEY_PREFIX must not contain whitespace');
  return {
    warehouseUrl: stack.warehouseUrl,
    redisUrl: stack.redisUrl,
    redis: stack.redis,
    redisClusterNodes: stack.redisClusterNodes,
    analyticsSchema,
    redisKeyPrefix,
  };
}

export function loadApiConfig(env: Env = process.env): ApiConfig {
  const store = loadClvStoreConfig(env);
  const authToken = optionalStr(env, 'API_AUTH_TOKEN');
  // A short token is guessable; refuse it rather than give a false sense of protection.
  if (authToken !== undefined && authToken.length < 16) {
    throw new ConfigError('API_AUTH_TOKEN must be at least 16 characters long');
  }
  const d = DEFAULT_RECENCY_THRESHOLDS;
  const recency: RecencyThresholds = {
    activeDays: int(env, 'CLV_RECENCY_ACTIVE_DAYS', d.activeDays, { min: 0 }),
    coolingDays: int(env, 'CLV_RECENCY_COOLING_DAYS', d.coolingDays, { min: 0 }),
    atRiskDays: int(env, 'CLV_RECENCY_AT_RISK_DAYS', d.atRiskDays, { min: 0 }),
  };
  if (!(recency.activeDays <= recency.coolingDays && recency.coolingDays <= recency.atRiskDays)) {
    throw new ConfigError(
      `recency thresholds must satisfy CLV_RECENCY_ACTIVE_DAYS <= CLV_RECENCY_COOLING_DAYS <= CLV_RECENCY_AT_RISK_DAYS, got ${recency.activeDays}/${recency.coolingDays}/${recency.atRiskDays}`,
    );
  }
  return {
    host: listenHost(env, 'API_HOST'),
    port: int(env, 'API_PORT', DEFAULT_PORTS.api, { min: 0, max: 65535 }),
    ...store,
    authToken,
    recency,
    redisTimeoutMs: int(env, 'API_REDIS_TIMEOUT_MS', 50, { min: 1 }),
    pgStatementTimeoutMs: int(env, 'API_PG_STATEMENT_TIMEOUT_MS', 2_000, { min: 1 }),
    pgPoolMax: int(env, 'API_PG_POOL_MAX', 10, { min: 1 }),
    fastLane: bool(env, 'API_FAST_LANE', true),
  };
}

/** The consumers' default too: keys are `clv:<id>`. */
export const DEFAULT_REDIS_KEY_PREFIX = '';
