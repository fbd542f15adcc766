import { bool, int, list, listenHost, oneOf, optionalStr, str, type Env } from '../config/env.ts';
import { loadStackConfig } from '../config/index.ts';
import type { KafkaConnection } from '../config/kafka.ts';
import type { RegistryConnection } from '../config/registry.ts';
import { ConfigError } from '../errors.ts';
import { HEALTH_PORTS, loadWatchdogConfig, type WatchdogConfig } from '../health/config.ts';
import { DEFAULT_PUBLISHER_OPTIONS, type PublisherOptions } from '../publisher/kafka-publisher.ts';
import { loadRdkafka } from '../publisher/rdkafka-transport.ts';

export type SnapshotMode = 'initial' | 'never' | 'always';

export interface CaptureConfig {
  sourceUrl: string;
  kafkaBrokers: string[];
  /** Brokers, TLS and SASL (src/config/kafka.ts). */
  kafka: KafkaConnection;
  registryUrl: string;
  registry: RegistryConnection;
  topicPrefix: string;
  slot: string;
  publication: string;
  snapshotMode: SnapshotMode;
  /** Schemas whose tables are captured (when `tables` is not given). */
  schemas: string[];
  /** Explicit schema.table list; overrides `schemas`. */
  tables: string[] | null;
  /** Schema in the source database for the capture's own bookkeeping (snapshot ledger). */
  metaSchema: string;
  tombstones: boolean;
  heartbeatMs: number;
  statusIntervalMs: number;
  metricsHost: string;
  /** Health and metrics listener (/healthz, /readyz, /metrics); 0 picks a free port; -1 disables it. */
  metricsPort: number;
  /** Progress watchdog (WATCHDOG_* settings, docs/operations.md). */
  watchdog: WatchdogConfig;
  /** Unconfirmed WAL up to this size does not count as work for the watchdog (heartbeat noise). */
  watchdogIdleBytes: number;
  /** Retained WAL above this is warned about in the log and by `npm run status`. */
  walWarnBytes: number;
  publisher: PublisherOptions;
  /** How long to wait for a previous capture's walsender to let go of the slot (after a crash). */
  slotBusyTimeoutMs: number;
  /** Interval of the progress log line (events/s, slot lag). */
  progressLogMs: number;
  /** BEGIN/END records on `<prefix>.transaction`, as Debezium's provide.transaction.metadata. */
  transactionMetadata: boolean;
  /** Rows per chunk of an on-demand (incremental) re-snapshot. */
  snapshotChunkSize: number;
  /** Op codes not published, as Debezium's skipped.operations (its default is `t`; ours is none). */
  skippedOperations: ReadonlySet<SkippableOp>;
}

export const SKIPPABLE_OPS = ['c', 'u', 'd', 't'] as const;
export type SkippableOp = (typeof SKIPPABLE_OPS)[number];

function skippedOperations(env: Env): Set<SkippableOp> {
  const raw = list(env, 'CAPTURE_SKIPPED_OPERATIONS', 'none');
  if (raw.length === 1 && raw[0] === 'none') return new Set();
  const bad = raw.filter((x) => !(SKIPPABLE_OPS as readonly string[]).includes(x));
  if (bad.length > 0 || raw.length === 0) throw new ConfigError(`CAPTURE_SKIPPED_OPERATIONS must be none or a list of c,u,d,t, got "${raw.join(',')}"`);
  return new Set(raw as SkippableOp[]);
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function ident(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  if (!IDENT.test(v)) throw new ConfigError(`${name} must be a lower-case identifier, got "${v}"`);
  return v;
}

export function loadCaptureConfig(env: Env = process.env): CaptureConfig {
  const stack = loadStackConfig(env);
  const tablesRaw = optionalStr(env, 'CAPTURE_TABLES');
  const tables = tablesRaw ? list(env, 'CAPTURE_TABLES', '') : null;
  for (const t of tables ?? []) {
    if (!/^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/.test(t)) throw new ConfigError(`CAPTURE_TABLES entries must be schema.table, got "${t}"`);
  }
  const high = int(env, 'CAPTURE_HIGH_WATER_MB', DEFAULT_PUBLISHER_OPTIONS.highWaterBytes / 2 ** 20, { min: 1 }) * 2 ** 20;
  const low = int(env, 'CAPTURE_LOW_WATER_MB', DEFAULT_PUBLISHER_OPTIONS.lowWaterBytes / 2 ** 20, { min: 0 }) * 2 ** 20;
  if (low >= high) throw new ConfigError('CAPTURE_LOW_WATER_MB must be below CAPTURE_HIGH_WATER_MB');
  const producer = oneOf(env, 'CAPTURE_PRODUCER', ['kafkajs', 'rdkafka'] as const, DEFAULT_PUBLISHER_OPTIONS.producer);
  // A native module that did not build is a start-up error naming the setting, not a failure at the first send.
  if (producer === 'rdkafka') {
    // The librdkafka transport is wired for plaintext brokers only: refuse rather than connect without the TLS/SASL asked for.
    if (stack.kafka.protocol !== 'PLAINTEXT') throw new ConfigError(`CAPTURE_PRODUCER=rdkafka supports PLAINTEXT brokers only, but KAFKA_SECURITY_PROTOCOL is ${stack.kafka.protocol}; use CAPTURE_PRODUCER=kafkajs`);
    loadRdkafka();
  }
  return {
    sourceUrl: stack.sourceUrl,
    kafkaBrokers: stack.kafkaBrokers,
    kafka: stack.kafka,
    registryUrl: stack.registryUrl,
    registry: stack.registry,
    topicPrefix: stack.topicPrefix,
    slot: ident(env, 'CAPTURE_SLOT', 'shop_cdc'),
    publication: ident(env, 'CAPTURE_PUBLICATION', 'shop_cdc'),
    snapshotMode: oneOf(env, 'CAPTURE_SNAPSHOT', ['initial', 'never', 'always'] as const, 'initial'),
    schemas: list(env, 'CAPTURE_SCHEMAS', 'public'),
    tables,
    metaSchema: ident(env, 'CAPTURE_META_SCHEMA', 'cdc_meta'),
    tombstones: bool(env, 'CAPTURE_TOMBSTONES', true),
    heartbeatMs: int(env, 'CAPTURE_HEARTBEAT_MS', 10_000, { min: 0 }),
    statusIntervalMs: int(env, 'CAPTURE_STATUS_INTERVAL_MS', 1_000, { min: 10 }),
    metricsHost: listenHost(env, 'CAPTURE_METRICS_HOST'),
    metricsPort: int(env, 'CAPTURE_METRICS_PORT', HEALTH_PORTS.capture, { min: -1, max: 65535 }),
    watchdog: loadWatchdogConfig(env),
    watchdogIdleBytes: int(env, 'CAPTURE_WATCHDOG_IDLE_BYTES', 64 * 1024, { min: 0 }),
    walWarnBytes: int(env, 'CAPTURE_WAL_WARN_BYTES', 2 ** 30, { min: 1 }),
    publisher: {
      ...DEFAULT_PUBLISHER_OPTIONS,
      highWaterBytes: high,
      lowWaterBytes: low,
      maxBatchMessages: int(env, 'CAPTURE_BATCH_MESSAGES', DEFAULT_PUBLISHER_OPTIONS.maxBatchMessages, { min: 1 }),
      partitions: int(env, 'CAPTURE_TOPIC_PARTITIONS', 1, { min: 1 }),
      // CAPTURE_TOPIC_REPLICATION (older, capture only) wins over the shared KAFKA_TOPIC_REPLICATION_FACTOR.
      replicationFactor: optionalStr(env, 'CAPTURE_TOPIC_REPLICATION') === undefined ? stack.topicReplication.factor : int(env, 'CAPTURE_TOPIC_REPLICATION', 1, { min: 1 }),
      replication: stack.topicReplication,
      cleanupPolicy: oneOf(env, 'CAPTURE_TOPIC_CLEANUP_POLICY', ['compact', 'delete', 'compact,delete'] as const, DEFAULT_PUBLISHER_OPTIONS.cleanupPolicy),
      deleteRetentionMs: int(env, 'CAPTURE_TOPIC_DELETE_RETENTION_MS', DEFAULT_PUBLISHER_OPTIONS.deleteRetentionMs, { min: 0 }),
      producer,
      lingerMs: int(env, 'CAPTURE_LINGER_MS', DEFAULT_PUBLISHER_OPTIONS.lingerMs, { min: 0, max: 1000 }),
    },
    slotBusyTimeoutMs: int(env, 'CAPTURE_SLOT_BUSY_TIMEOUT_MS', 60_000, { min: 0 }),
    progressLogMs: int(env, 'CAPTURE_PROGRESS_LOG_MS', 10_000, { min: 100 }),
    transactionMetadata: bool(env, 'CAPTURE_TRANSACTION_METADATA', false),
    snapshotChunkSize: int(env, 'CAPTURE_SNAPSHOT_CHUNK_SIZE', 4096, { min: 1, max: 1_000_000 }),
    skippedOperations: skippedOperations(env),
  };
}
