import type { RedisOptions } from 'ioredis';
import { ConfigError } from '../errors.ts';
import { fileContents, optionalStr, withSecret, type Env } from './env.ts';

/**
 * How the consumers, the API and `redis rebuild` connect to Redis: the URL
 * (`rediss://` for TLS) plus an ACL user and TLS files (docs/security.md).
 * A user and password in the URL work too; the separate settings exist so
 * the password can come from a file (REDIS_PASSWORD_FILE) and stay out of
 * the URL that start-up lines show.
 */
export interface RedisConnection {
  url: string;
  username?: string;
  password?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

export function loadRedisConnection(env: Env, url: string): RedisConnection {
  const tls = new URL(url).protocol === 'rediss:';
  const ca = fileContents(env, 'REDIS_TLS_CA_FILE');
  const cert = fileContents(env, 'REDIS_TLS_CERT_FILE');
  const key = fileContents(env, 'REDIS_TLS_KEY_FILE');
  if (!tls && (ca || cert || key)) throw new ConfigError('REDIS_TLS_* is set but REDIS_URL is redis://; use rediss:// for TLS');
  if (!cert !== !key) throw new ConfigError('REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together: set both or neither');
  const conn: RedisConnection = { url };
  const username = optionalStr(env, 'REDIS_USERNAME');
  if (username) conn.username = username;
  const password = optionalStr(env, 'REDIS_PASSWORD');
  if (username && !password) throw new ConfigError('REDIS_USERNAME is set but REDIS_PASSWORD (or REDIS_PASSWORD_FILE) is not');
  if (password) withSecret(conn, 'password', password);
  if (tls) conn.tls = { ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) };
  return conn;
}

/** ioredis options for the connection, merged with the caller's own (timeouts, queueing). */
export function redisClientOptions(conn: RedisConnection, extra: RedisOptions = {}): RedisOptions {
  const o: RedisOptions = { ...extra };
  if (conn.username) o.username = conn.username;
  if (conn.password) o.password = conn.password;
  if (conn.tls) o.tls = { ...conn.tls };
  return o;
}
