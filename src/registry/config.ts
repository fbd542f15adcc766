import { ConfigError } from '../errors.ts';
import { DEFAULT_PORTS } from '../config/index.ts';
import { int, listenHost, oneOf, str, url, type Env } from '../config/env.ts';
import { COMPATIBILITY_LEVELS, type CompatibilityLevel } from './compatibility.ts';

export interface RegistryConfig {
  host: string;
  /** 0 picks a free port (tests); the bound port is logged and exposed by the service. */
  port: number;
  databaseUrl: string;
  /** Postgres schema holding the registry tables; tests use their own for isolation. */
  schema: string;
  /** Global compatibility level used until someone PUTs /config (Confluent: schema.compatibility.level). */
  defaultCompatibility: CompatibilityLevel;
  /** How long start-up keeps retrying an unreachable store before giving up. */
  startupTimeoutMs: number;
}

// The schema name is interpolated into SQL as an identifier, so it is held to
// a plain lower-case identifier rather than quoted-and-escaped.
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function loadRegistryConfig(env: Env = process.env): RegistryConfig {
  const schema = str(env, 'REGISTRY_SCHEMA', 'schema_registry');
  if (!SCHEMA_NAME.test(schema)) {
    throw new ConfigError(`REGISTRY_SCHEMA must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, max 63), got "${schema}"`);
  }
  return {
    host: listenHost(env, 'REGISTRY_HOST'),
    port: int(env, 'REGISTRY_PORT', DEFAULT_PORTS.registry, { min: 0, max: 65535 }),
    databaseUrl: url(env, 'REGISTRY_DATABASE_URL', `postgres://postgres@127.0.0.1:${DEFAULT_PORTS.postgres}/registry`, ['postgres:', 'postgresql:']),
    schema,
    defaultCompatibility: oneOf(env, 'REGISTRY_DEFAULT_COMPATIBILITY', COMPATIBILITY_LEVELS, 'BACKWARD'),
    startupTimeoutMs: int(env, 'REGISTRY_STARTUP_TIMEOUT_MS', 30_000, { min: 0 }),
  };
}
