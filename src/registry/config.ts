import { ConfigError } from '../errors.ts';
import { DEFAULT_PORTS } from '../config/index.ts';
import { bool, fileContents, int, listenHost, oneOf, optionalStr, str, url, withSecret, type Env } from '../config/env.ts';
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
  /** When set, every route but /healthz and /readyz needs HTTP basic auth as this user (the password is a hidden field). */
  basicAuth?: { username: string; password: string };
  /** Serve https with this certificate and key. */
  tls?: { cert: Buffer; key: Buffer };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

function loadServerSecurity(env: Env, host: string): Pick<RegistryConfig, 'basicAuth' | 'tls'> {
  const out: Pick<RegistryConfig, 'basicAuth' | 'tls'> = {};
  const userInfo = optionalStr(env, 'REGISTRY_BASIC_AUTH_USER_INFO');
  if (userInfo) {
    const i = userInfo.indexOf(':');
    if (i <= 0 || i === userInfo.length - 1) throw new ConfigError('REGISTRY_BASIC_AUTH_USER_INFO must be user:password');
    out.basicAuth = withSecret({ username: userInfo.slice(0, i) }, 'password', userInfo.slice(i + 1));
  } else if (!LOOPBACK.has(host) && !bool(env, 'REGISTRY_ALLOW_ANONYMOUS', false)) {
    // Off by default only where nobody else can connect.
    throw new ConfigError(`REGISTRY_HOST is ${host} (beyond loopback) but REGISTRY_BASIC_AUTH_USER_INFO is not set; set it, or REGISTRY_ALLOW_ANONYMOUS=true to serve without auth`);
  }
  const cert = fileContents(env, 'REGISTRY_TLS_CERT_FILE');
  const key = fileContents(env, 'REGISTRY_TLS_KEY_FILE');
  if (!cert !== !key) throw new ConfigError('REGISTRY_TLS_CERT_FILE and REGISTRY_TLS_KEY_FILE go together: set both or neither');
  if (cert && key) out.tls = { cert, key };
  return out;
}

// The schema name is interpolated into SQL as an identifier, so it is held to
// a plain lower-case identifier rather than quoted-and-escaped.
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function loadRegistryConfig(env: Env = process.env): RegistryConfig {
  const schema = str(env, 'REGISTRY_SCHEMA', 'schema_registry');
  if (!SCHEMA_NAME.test(schema)) {
    throw new ConfigError(`REGISTRY_SCHEMA must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, max 63), got "${schema}"`);
  }
  const host = listenHost(env, 'REGISTRY_HOST');
  return {
    ...loadServerSecurity(env, host),
    host,
    port: int(env, 'REGISTRY_PORT', DEFAULT_PORTS.registry, { min: 0, max: 65535 }),
    databaseUrl: url(env, 'REGISTRY_DATABASE_URL', `postgres://postgres@127.0.0.1:${DEFAULT_PORTS.postgres}/registry`, ['postgres:', 'postgresql:']),
    schema,
    defaultCompatibility: oneOf(env, 'REGISTRY_DEFAULT_COMPATIBILITY', COMPATIBILITY_LEVELS, 'BACKWARD'),
    startupTimeoutMs: int(env, 'REGISTRY_STARTUP_TIMEOUT_MS', 30_000, { min: 0 }),
  };
}
