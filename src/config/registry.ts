import { Agent as HttpsAgent } from 'node:https';
import { ConfigError } from '../errors.ts';
import { fileContents, optionalStr, withSecret, type Env } from './env.ts';

/**
 * How our registry clients (the capture's RegistryClient, the consumers'
 * decoder) reach the schema registry: basic auth as Confluent's clients
 * send it (`basic.auth.user.info` = user:password) or a bearer token, and
 * a CA file for https (docs/security.md).
 */
export interface RegistryConnection {
  url: string;
  /** Basic-auth user name; the password is a hidden field. */
  username?: string;
  password?: string;
  bearerToken?: string;
  ca?: Buffer;
}

export function loadRegistryConnection(env: Env, url: string): RegistryConnection {
  const conn: RegistryConnection = { url };
  const userInfo = optionalStr(env, 'SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO');
  const token = optionalStr(env, 'SCHEMA_REGISTRY_BEARER_TOKEN');
  if (userInfo && token) throw new ConfigError('SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO and SCHEMA_REGISTRY_BEARER_TOKEN are both set; set one');
  if (userInfo) {
    const i = userInfo.indexOf(':');
    if (i <= 0) throw new ConfigError('SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO must be user:password');
    conn.username = userInfo.slice(0, i);
    withSecret(conn, 'password', userInfo.slice(i + 1));
  }
  if (token) withSecret(conn, 'bearerToken', token);
  const ca = fileContents(env, 'SCHEMA_REGISTRY_CA_FILE');
  if (ca) {
    if (!url.startsWith('https:')) throw new ConfigError('SCHEMA_REGISTRY_CA_FILE is set but SCHEMA_REGISTRY_URL is not https://');
    conn.ca = ca;
  }
  return conn;
}

/** The Authorization header value, or undefined when the registry is open. */
export function registryAuthorization(conn: RegistryConnection): string | undefined {
  if (conn.bearerToken) return `Bearer ${conn.bearerToken}`;
  if (conn.username !== undefined) return `Basic ${Buffer.from(`${conn.username}:${conn.password ?? ''}`).toString('base64')}`;
  return undefined;
}

/** An https agent trusting the CA file, for clients that take an agent; undefined when the system CAs do. */
export function registryAgent(conn: RegistryConnection): HttpsAgent | undefined {
  return conn.ca ? new HttpsAgent({ ca: conn.ca, keepAlive: true }) : undefined;
}
