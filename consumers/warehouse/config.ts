import { loadStackConfig, type StackConfig } from '../../src/config/index.ts';
import { int, oneOf, optionalStr, str, type Env } from '../../src/config/env.ts';
import { loadWarehouseSchemas } from '../../src/config/warehouse-schemas.ts';
import { ConfigError } from '../../src/errors.ts';
import type { ClvThresholds } from './derived-sql.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { CONTRACT_DECIMAL_SCALES, VALUE_FORMATS, type InputFormats, type ValueFormat } from '../../src/consumer/decode.ts';
import { TABLES, TABLE_NAMES, isTableName } from '../../src/consumer/tables.ts';

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
  /** Time budgets of one transaction, live and with a backlog waiting (src/consumer/tx-sizer.ts). */
  txBudgetMs: number;
  backlogTxBudgetMs: number;
  /** Partition batches taken at once and applied in one transaction (group commit). */
  partitionsConcurrently: number;
  sessionTimeoutMs: number;
  topicWaitMs: number;
  /** How message values are read (Avro, Debezium JSON, or detected per message). */
  inputFormats: InputFormats;
  /** CONSUMER_ON_RETENTION_GAP: stop (default; pause the partitions whose unapplied changes retention removed) or continue. */
  onRetentionGap: 'stop' | 'continue';
}

function decimal(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  if (!/^\d+(\.\d+)?$/.test(v)) throw new ConfigError(`${name} must be a non-negative decimal, got "${v}"`);
  return v;
}

const DEFAULT_DECIMAL_SCALES = Object.entries(CONTRACT_DECIMAL_SCALES).map(([c, s]) => `${c}=${s}`).join(',');

function isFormat(v: string): v is ValueFormat {
  return (VALUE_FORMATS as readonly string[]).includes(v);
}

/** CONSUMER_VALUE_FORMAT, CONSUMER_VALUE_FORMAT_TOPICS (`topic=format,…`), CONSUMER_DECIMAL_SCALES (`table.column=scale,…`). */
export function loadInputFormats(env: Env): InputFormats {
  const format = str(env, 'CONSUMER_VALUE_FORMAT', 'auto');
  if (!isFormat(format)) throw new ConfigError(`CONSUMER_VALUE_FORMAT must be one of ${VALUE_FORMATS.join('|')}, got "${format}"`);
  const topics: Record<string, ValueFormat> = {};
  for (const item of (optionalStr(env, 'CONSUMER_VALUE_FORMAT_TOPICS') ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const [topic, f, ...rest] = item.split('=');
    if (!topic || !f || rest.length > 0 || !isFormat(f)) throw new ConfigError(`CONSUMER_VALUE_FORMAT_TOPICS entries are topic=${VALUE_FORMATS.join('|')}, got "${item}"`);
    topics[topic] = f;
  }
  const decimalScales: Record<string, number> = {};
  for (const item of str(env, 'CONSUMER_DECIMAL_SCALES', DEFAULT_DECIMAL_SCALES).split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([a-z_]+)\.([a-z_][a-z0-9_]*)=(\d{1,3})$/.exec(item);
    if (!m || !isTableName(m[1]) || TABLES[m[1]].columns[m[2]!] !== 'numeric') {
      throw new ConfigError(`CONSUMER_DECIMAL_SCALES entries are table.numeric_column=scale, got "${item}"`);
    }
    decimalScales[`${m[1]}.${m[2]}`] = Number(m[3]);
  }
  return { format, topics, decimalScales };
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
    maxMessagesPerTx: int(env, 'CONSUMER_MAX_MESSAGES_PER_TX', 20_000, { min: 1 }),
    txBudgetMs: int(env, 'CONSUMER_TX_BUDGET_MS', 250, { min: 1 }),
    // Under the session timeout (10 s): the member heartbeats between transactions, and
    // during one too, so one slower than its budget on a busy machine keeps its partitions.
    backlogTxBudgetMs: int(env, 'CONSUMER_BACKLOG_TX_BUDGET_MS', 5000, { min: 1, max: 5000 }),
    partitionsConcurrently: int(env, 'CONSUMER_PARTITIONS_CONCURRENTLY', 8, { min: 1, max: 64 }),
    // Brokers refuse less than group.min.session.timeout.ms (6 s by default). 10 s bounds
    // the wait for a SIGKILLed member's partitions (docs/consumers.md, "Restarts").
    sessionTimeoutMs: int(env, 'CONSUMER_SESSION_TIMEOUT_MS', 10_000, { min: 6000 }),
    topicWaitMs: int(env, 'CONSUMER_TOPIC_WAIT_MS', 30_000, { min: 0 }),
    inputFormats: loadInputFormats(env),
    onRetentionGap: oneOf(env, 'CONSUMER_ON_RETENTION_GAP', ['stop', 'continue'] as const, 'stop'),
  };
}
