import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';

/**
 * Typed readers over an environment map. Each throws a ConfigError whose
 * message is one line naming the variable and what is wrong with it, so that
 * `runMain` can print it and exit non-zero before anything starts.
 */
export type Env = Record<string, string | undefined>;

/**
 * A setting's value, or, when `NAME` is unset and `NAME_FILE` names a file,
 * that file's contents (as the official Docker images read secrets from
 * mounted files). Every reader below goes through here, so any setting, a
 * URL with a password in it included, can come from a file.
 */
function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  const direct = v === undefined || v.trim() === '' ? undefined : v.trim();
  const file = env[`${name}_FILE`]?.trim();
  if (!file) return direct;
  if (direct !== undefined) throw new ConfigError(`${name} and ${name}_FILE are both set; set one`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${name}_FILE names a file that cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): ${file}`);
  }
  const t = text.trim();
  if (t === '') throw new ConfigError(`${name}_FILE names an empty file: ${file}`);
  return t;
}

/** The contents of a file a setting names (a CA bundle, a certificate, a key), read at start-up so a missing file is a config error. */
export function fileContents(env: Env, name: string): Buffer | undefined {
  const path = raw(env, name);
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${name} names a file that cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): ${path}`);
  }
}

export function str(env: Env, name: string, fallback?: string): string {
  const v = raw(env, name) ?? fallback;
  if (v === undefined) throw new ConfigError(`${name} is required but not set`);
  return v;
}

export function optionalStr(env: Env, name: string): string | undefined {
  return raw(env, name);
}

export function int(env: Env, name: string, fallback: number, opts: { min?: number; max?: number } = {}): number {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (!/^-?\d+$/.test(v)) throw new ConfigError(`${name} must be an integer, got "${v}"`);
  const n = Number(v);
  if (opts.min !== undefined && n < opts.min) throw new ConfigError(`${name} must be >= ${opts.min}, got ${n}`);
  if (opts.max !== undefined && n > opts.max) throw new ConfigError(`${name} must be <= ${opts.max}, got ${n}`);
  return n;
}

export function bool(env: Env, name: string, fallback: boolean): boolean {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw new ConfigError(`${name} must be true or false, got "${v}"`);
}

export function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${v}"`);
  }
  return v as T;
}

export function url(env: Env, name: string, fallback: string | undefined, protocols: readonly string[]): string {
  const v = str(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw new ConfigError(`${name} must be a URL, got "${redactUrl(v)}"`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  }
  // postgres:///db?host=/run/postgresql (a Unix socket) is the one URL without a host name.
  const socket = (parsed.protocol === 'postgres:' || parsed.protocol === 'postgresql:') && parsed.searchParams.has('host');
  if (!parsed.hostname && !socket) throw new ConfigError(`${name} must name a host, got "${redactUrl(v)}"`);
  if (parsed.protocol === 'postgres:' || parsed.protocol === 'postgresql:') checkPgSslParams(name, parsed);
  return v;
}

const PG_SSLMODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];

/**
 * node-postgres reads sslrootcert/sslcert/sslkey when it opens the first
 * connection and throws a bare ENOENT then; checked here instead, so the
 * line names the setting.
 */
function checkPgSslParams(name: string, u: URL): void {
  const mode = u.searchParams.get('sslmode');
  if (mode !== null && !PG_SSLMODES.includes(mode)) throw new ConfigError(`${name}: sslmode must be one of ${PG_SSLMODES.join(', ')}, got "${mode}"`);
  for (const param of ['sslrootcert', 'sslcert', 'sslkey']) {
    const file = u.searchParams.get(param);
    if (file === null) continue;
    try {
      readFileSync(file);
    } catch (err) {
      throw new ConfigError(`${name}: ${param} names a file that cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): ${file}`);
    }
  }
}

const BROKER = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):(\d{1,5})$/;

/**
 * A comma-separated list of Kafka bootstrap brokers, each `host:port`
 * (IPv6 as `[::1]:9092`). Checked here so that `KAFKA_BROKERS=:::` is a
 * config error at start-up, not a connection timeout later.
 */
export function brokerList(env: Env, name: string, fallback: string): string[] {
  return hostPortList(env, name, fallback, 'brokers');
}

/** A comma-separated `host:port` list (Kafka brokers, Redis Cluster seed nodes); `what` names the items in the error. */
export function hostPortList(env: Env, name: string, fallback: string, what: string): string[] {
  const items = list(env, name, fallback);
  for (const b of items) {
    const m = BROKER.exec(b);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) throw new ConfigError(`${name} must list ${what} as host:port[,host:port...], got "${b}"`);
  }
  return items;
}

export function list(env: Env, name: string, fallback: string): string[] {
  const items = str(env, name, fallback).split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new ConfigError(`${name} must list at least one value`);
  return items;
}

/** Host:port for a listener; refuses to bind beyond loopback unless asked to explicitly. */
export function listenHost(env: Env, name: string): string {
  return str(env, name, '127.0.0.1');
}

/**
 * Puts a secret on a settings object as a non-enumerable property: code that
 * needs it reads it by name, but JSON, pino and util.inspect of the settings
 * (a config dump, a debug line) do not see it.
 */
export function withSecret<T extends object, K extends string>(obj: T, key: K, value: string): T & Record<K, string> {
  Object.defineProperty(obj, key, { value, enumerable: false, writable: false });
  return obj as T & Record<K, string>;
}

/** Replace a password in a connection URL so the URL can be logged. */
export function redactUrl(value: string): string {
  try {
    const u = new URL(value);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return value.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}
