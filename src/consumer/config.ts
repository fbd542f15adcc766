import { loadStackConfig, type StackConfig } from '../config/index.ts';
import { int, optionalStr, str, type Env } from '../config/env.ts';
import { loadWarehouseSchemas } from '../config/warehouse-schemas.ts';
import { ConfigError } from '../errors.ts';
import type { ClvThresholds } from '../sinks/postgres/derived-sql.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { TABLE_NAMES } from './tables.ts';

/** Settings of the warehouse consumer process (consumers/warehouse/main.ts). */
export interface WarehouseConsumerConfig {
  stack: StackConfig;
  sourceSchema: string;
  group: string;
  schemas: WarehouseSchemas;
  topics: string[];
  redisKeyPrefix: string;
  thresholds: ClvThresholds;
  maxMessagesPerTx: number;
  /** Partition batches taken at once and applied in one transaction (group commit). */
  partitionsConcurrently: number;
  sessionTimeoutMs: number;
  topicWaitMs: number;
}

function decimal(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  if (!/^\d+(\.\d+)?$/.test(v)) throw new ConfigError(`${name} must be a non-negative decimal, got "${v}"`);
  return v;
}

export function loadWarehouseConsumerConfig(env: Env = process.env): WarehouseConsumerConfig {
  const stack = loadStackConfig(env);
  const sourceSchema = str(env, 'SOURCE_SCHEMA', 'public');
  const redisKeyPrefix = optionalStr(env, 'REDIS_KEY_PREFIX') ?? '';
  if (/\s/.test(redisKeyPrefix)) throw new ConfigError('REDIS_KEY_PREFIX must not contain whitespace');
  return {
    stack,
    sourceSchema,
    group: str(env, 'CONSUMER_GROUP', 'warehouse'),
    schemas: loadWarehouseSchemas(env),
    topics: TABLE_NAMES.map((t) => `${stack.topicPrefix}.${sourceSchema}.${t}`),
    redisKeyPrefix,
    thresholds: {
      valueHigh: decimal(env, 'CLV_VALUE_HIGH', '1000'),
      valueMedium: decimal(env, 'CLV_VALUE_MEDIUM', '250'),
      frequencyRepeat: int(env, 'CLV_FREQUENCY_REPEAT', 2, { min: 1 }),
      frequencyLoyal: int(env, 'CLV_FREQUENCY_LOYAL', 5, { min: 1 }),
    },
    maxMessagesPerTx: int(env, 'CONSUMER_MAX_MESSAGES_PER_TX', 2000, { min: 1 }),
    partitionsConcurrently: int(env, 'CONSUMER_PARTITIONS_CONCURRENTLY', 8, { min: 1, max: 64 }),
    // Brokers refuse less than group.min.session.timeout.ms (6 s by default). 10 s bounds
    // the wait for a SIGKILLed member's partitions (docs/consumers.md, "Restarts").
    sessionTimeoutMs: int(env, 'CONSUMER_SESSION_TIMEOUT_MS', 10_000, { min: 6000 }),
    topicWaitMs: int(env, 'CONSUMER_TOPIC_WAIT_MS', 30_000, { min: 0 }),
  };
}
