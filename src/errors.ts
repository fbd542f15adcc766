/**
 * The project's named errors. Each carries a stable `code` a user can look up
 * in docs/errors.md, a `retriable` flag that tells loops whether to back off
 * and try again or to stop, and the underlying `cause`.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'SOURCE_NOT_READY'
  | 'DECODE_FAILED'
  | 'VALIDATION_FAILED'
  | 'SCHEMA_REGISTRY'
  | 'SCHEMA_INCOMPATIBLE'
  | 'KAFKA_UNAVAILABLE'
  | 'SINK_UNAVAILABLE'
  | 'SOURCE_UNAVAILABLE'
  | 'REDIS_UNAVAILABLE'
  | 'MIGRATION_FAILED'
  | 'STACK_UNAVAILABLE'
  | 'STALLED'
  | 'REPLAY_REFUSED'
  | 'STARTUP_TIMEOUT'
  | 'KAFKA_REFUSED'
  | 'CONSUMER_CRASHED'
  | 'AUTH_FAILED'
  | 'UNEXPECTED';

export abstract class CdcError extends Error {
  abstract readonly code: ErrorCode;
  abstract readonly retriable: boolean;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A replay that would leave tables different from the source: a rebuild not
 * starting at the log start or lacking rows the live tables hold (a moved
 * log start), a rewind over changes lost to retention.
 * Refused before anything changes (docs/operations.md).
 */
export class ReplayRefusedError extends CdcError {
  readonly code = 'REPLAY_REFUSED' as const;
  readonly retriable = false;
}

/** Bad or missing configuration: fatal at start-up, one line to the user. */
export class ConfigError extends CdcError {
  readonly code = 'CONFIG_INVALID' as const;
  readonly retriable = false;
}

/** The source database cannot do logical replication as configured (wal_level, REPLICATION role, slot or publication mismatch). */
export class SourceNotReadyError extends CdcError {
  readonly code = 'SOURCE_NOT_READY' as const;
  readonly retriable = false;
}

/** A message could not be decoded (bad bytes, unknown schema id, bad pgoutput). Goes to a dead-letter topic, never dropped. */
export class DecodeError extends CdcError {
  readonly code = 'DECODE_FAILED' as const;
  readonly retriable = false;
}

/** A message decoded but breaks the data contract (missing key, impossible value). Goes to a dead-letter topic. */
export class ValidationError extends CdcError {
  readonly code = 'VALIDATION_FAILED' as const;
  readonly retriable = false;
}

export type UnavailableCode = 'KAFKA_UNAVAILABLE' | 'SINK_UNAVAILABLE' | 'SOURCE_UNAVAILABLE' | 'REDIS_UNAVAILABLE' | 'SCHEMA_REGISTRY' | 'STACK_UNAVAILABLE';

/** A downstream store (Kafka, Postgres, Redis, the registry) is unreachable or refused a write; retry with backoff. */
export class UnavailableError extends CdcError {
  readonly retriable = true;
  constructor(
    readonly code: UnavailableCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A new schema version was rejected by the registry's compatibility rules. */
export class SchemaIncompatibleError extends CdcError {
  readonly code = 'SCHEMA_INCOMPATIBLE' as const;
  readonly retriable = false;
}

export class MigrationError extends CdcError {
  readonly code = 'MIGRATION_FAILED' as const;
  readonly retriable = false;
}

/**
 * A one-shot command (migrate, verify, replay, redis rebuild, generate)
 * waited its bounded time for a server that stayed unavailable. Fatal:
 * the message names the server and the setting pointing at it.
 */
export class StartupTimeoutError extends CdcError {
  readonly code = 'STARTUP_TIMEOUT' as const;
  readonly retriable = false;
}

/** Kafka refused a request for good (message too large, authorization, invalid config): retrying the same request cannot help. */
export class KafkaRefusedError extends CdcError {
  readonly code = 'KAFKA_REFUSED' as const;
  readonly retriable = false;
}

/** A Kafka consumer stopped for good (kafkajs CRASH without restart): the process exits so a supervisor restarts it. */
export class ConsumerCrashedError extends CdcError {
  readonly code = 'CONSUMER_CRASHED' as const;
  readonly retriable = false;
}

/**
 * A server refused our credentials or we refused its certificate (a wrong
 * password, an unknown user, a CA that does not match): fatal, since
 * retrying the same credentials cannot help. The message names the setting.
 */
export class AuthFailedError extends CdcError {
  readonly code = 'AUTH_FAILED' as const;
  readonly retriable = false;
}

/** An error the classifier (src/lifecycle/classify.ts) does not know: treated as fatal. */
export class UnexpectedError extends CdcError {
  readonly code = 'UNEXPECTED' as const;
  readonly retriable = false;
}

export function isRetriable(err: unknown): boolean {
  return err instanceof CdcError ? err.retriable : false;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Postgres refused the data itself, so retrying the same batch cannot help:
 * class 22 (data exception: numeric overflow, bad date), 23 (integrity
 * constraint) or 54 (program limit: a value too large for an index row).
 * The consumers then isolate the message and dead-letter it.
 */
export function isPostgresDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|23|54)/.test(code);
}
