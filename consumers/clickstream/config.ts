import { int, str, type Env } from '../../src/config/env.ts';
import { loadStackConfig, type StackConfig } from '../../src/config/index.ts';
import { loadWarehouseSchemas } from '../../src/config/warehouse-schemas.ts';
import { ConfigError } from '../../src/errors.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';

/**
 * Settings of the clickstream consumer process (consumers/clickstream/main.ts).
 * Schema variables are the ones the warehouse consumer reads, so both
 * processes of one deployment point at the same warehouse; group and topic
 * have their own names because the two groups run side by side.
 */
export interface ClickstreamConfig {
  stack: StackConfig;
  group: string;
  topic: string;
  schemas: WarehouseSchemas;
  allowedLatenessUs: bigint;
  maxMessagesPerTx: number;
  sessionTimeoutMs: number;
}

export function loadClickstreamConfig(env: Env = process.env): ClickstreamConfig {
  const topic = str(env, 'CLICKSTREAM_TOPIC', 'clickstream.events');
  if (!/^[A-Za-z0-9._-]{1,245}$/.test(topic)) throw new ConfigError(`CLICKSTREAM_TOPIC must be a Kafka topic name, got "${topic}"`);
  return {
    stack: loadStackConfig(env),
    group: str(env, 'CLICKSTREAM_GROUP', 'clickstream'),
    topic,
    schemas: loadWarehouseSchemas(env),
    // docs/contract.md §3 default: 24 h. Zero is allowed (only in-order events count).
    allowedLatenessUs: BigInt(int(env, 'CLICKSTREAM_ALLOWED_LATENESS_SECONDS', 86_400, { min: 0 })) * 1_000_000n,
    maxMessagesPerTx: int(env, 'CLICKSTREAM_MAX_MESSAGES_PER_TX', 1000, { min: 1 }),
    // Brokers refuse less than group.min.session.timeout.ms (6 s by default).
    sessionTimeoutMs: int(env, 'CLICKSTREAM_SESSION_TIMEOUT_MS', 30_000, { min: 6000 }),
  };
}
