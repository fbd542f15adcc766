import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { inspect } from 'node:util';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { str } from '../../src/config/env.ts';
import { loadStackConfig } from '../../src/config/index.ts';
import { kafkaClientConfig, loadKafkaConnection } from '../../src/config/kafka.ts';
import { loadRedisConnection, redisClientOptions } from '../../src/config/redis.ts';
import { loadRegistryConnection, registryAuthorization } from '../../src/config/registry.ts';
import { AuthFailedError, ConfigError } from '../../src/errors.ts';
import { classify } from '../../src/lifecycle/classify.ts';
import { postgresEndpoint, stackEndpoints } from '../../src/lifecycle/endpoints.ts';
import { loadRegistryConfig } from '../../src/registry/config.ts';

const require = createRequire(import.meta.url);
const kerr = require('kafkajs/src/errors') as Record<string, new (...a: any[]) => Error>;
const dir = mkdtempSync(join(tmpdir(), 'config-security-'));
const file = (name: string, text: string) => { const f = join(dir, name); writeFileSync(f, text); return f; };
const CA = file('ca.pem', '-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n');

describe('NAME_FILE settings', () => {
  it('reads a setting from the file NAME_FILE names, without its trailing newline', () => {
    expect(str({ X_FILE: file('x', 'from-file\n') }, 'X')).toBe('from-file');
  });
  it('refuses both NAME and NAME_FILE, and a missing or empty file, naming the setting', () => {
    expect(() => str({ X: 'a', X_FILE: file('y', 'b') }, 'X')).toThrow(/X and X_FILE are both set/);
    expect(() => str({ X_FILE: join(dir, 'nope') }, 'X')).toThrow(/X_FILE names a file that cannot be read \(ENOENT\)/);
    expect(() => str({ X_FILE: file('empty', '\n') }, 'X')).toThrow(/X_FILE names an empty file/);
  });
  it('works for URLs with a password in them', () => {
    const cfg = loadStackConfig({ SOURCE_DATABASE_URL_FILE: file('url', 'postgres://capture:pw@db.internal:5432/shop\n') });
    expect(cfg.sourceUrl).toBe('postgres://capture:pw@db.internal:5432/shop');
  });
  it('checks the sslrootcert a Postgres URL names at start-up', () => {
    expect(() => loadStackConfig({ WAREHOUSE_DATABASE_URL: 'postgres://w@db:5432/warehouse?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem' }))
      .toThrow(/WAREHOUSE_DATABASE_URL: sslrootcert names a file that cannot be read/);
    expect(() => loadStackConfig({ WAREHOUSE_DATABASE_URL: 'postgres://w@db:5432/warehouse?sslmode=verify-all' })).toThrow(/sslmode must be one of/);
  });
});

describe('Kafka connection block', () => {
  it('is plaintext by default and builds brokers only', () => {
    const conn = loadKafkaConnection({}, '127.0.0.1:59092');
    expect(kafkaClientConfig(conn, { clientId: 'x' })).toEqual({ clientId: 'x', brokers: ['127.0.0.1:59092'] });
  });
  it('builds SASL_SSL with SCRAM from the settings, the password from a file, hidden from dumps', () => {
    const conn = loadKafkaConnection({
      KAFKA_BROKERS: 'b1:9093', KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SSL_CA_FILE: CA,
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256', KAFKA_SASL_USERNAME: 'capture', KAFKA_SASL_PASSWORD_FILE: file('kpw', 's3cret-kafka\n'),
    }, 'unused:1');
    const cfg = kafkaClientConfig(conn, { clientId: 'c' });
    expect(cfg.sasl).toEqual({ mechanism: 'scram-sha-256', username: 'capture', password: 's3cret-kafka' });
    expect(cfg.ssl).toMatchObject({ rejectUnauthorized: true });
    expect(String((cfg.ssl as { ca: Buffer }).ca)).toContain('BEGIN CERTIFICATE');
    expect(JSON.stringify(conn)).not.toContain('s3cret-kafka');
    expect(inspect(conn, { depth: 5 })).not.toContain('s3cret-kafka');
  });
  it('refuses TLS or SASL settings the protocol would ignore, and a SASL protocol without credentials', () => {
    expect(() => loadKafkaConnection({ KAFKA_SSL_CA_FILE: CA }, 'b:1')).toThrow(/KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL is PLAINTEXT/);
    expect(() => loadKafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_SASL_USERNAME: 'u' }, 'b:1')).toThrow(/KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL is SSL/);
    expect(() => loadKafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL' }, 'b:1')).toThrow(/KAFKA_SASL_USERNAME is required/);
    expect(() => loadKafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'TLS' }, 'b:1')).toThrow(ConfigError);
    expect(() => loadKafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_SSL_CERT_FILE: CA }, 'b:1')).toThrow(/go together/);
  });
  it('can turn the host-name check off, but keeps verifying the chain', () => {
    const conn = loadKafkaConnection({ KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_SSL_CHECK_HOSTNAME: 'false' }, 'b:1');
    expect(conn.ssl!.rejectUnauthorized).toBe(true);
    expect(conn.ssl!.checkServerIdentity!('x', {} as never)).toBeUndefined();
  });
});

describe('registry and Redis connections', () => {
  it('sends basic auth from user:password, or a bearer token, never both', () => {
    const basic = loadRegistryConnection({ SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: 'sr-user:pa:ss' }, 'https://sr:8081');
    expect(registryAuthorization(basic)).toBe(`Basic ${Buffer.from('sr-user:pa:ss').toString('base64')}`);
    expect(JSON.stringify(basic)).not.toContain('pa:ss');
    expect(registryAuthorization(loadRegistryConnection({ SCHEMA_REGISTRY_BEARER_TOKEN: 'tok-123' }, 'https://sr'))).toBe('Bearer tok-123');
    expect(() => loadRegistryConnection({ SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: 'a:b', SCHEMA_REGISTRY_BEARER_TOKEN: 't' }, 'https://sr')).toThrow(/both set/);
    expect(() => loadRegistryConnection({ SCHEMA_REGISTRY_CA_FILE: CA }, 'http://sr')).toThrow(/not https/);
  });
  it('gives ioredis the ACL user, the password and the CA; TLS files need rediss://', () => {
    const conn = loadRedisConnection({ REDIS_USERNAME: 'clv', REDIS_PASSWORD: 'redis-pw', REDIS_TLS_CA_FILE: CA }, 'rediss://r:6380');
    expect(redisClientOptions(conn, { lazyConnect: true })).toMatchObject({ lazyConnect: true, username: 'clv', password: 'redis-pw', tls: { ca: expect.any(Buffer) } });
    expect(JSON.stringify(conn)).not.toContain('redis-pw');
    expect(() => loadRedisConnection({ REDIS_TLS_CA_FILE: CA }, 'redis://r:6379')).toThrow(/use rediss:\/\//);
    expect(() => loadRedisConnection({ REDIS_USERNAME: 'clv' }, 'redis://r:6379')).toThrow(/REDIS_PASSWORD/);
  });
  it('lets the registry serve without auth on loopback only', () => {
    expect(loadRegistryConfig({}).basicAuth).toBeUndefined();
    expect(() => loadRegistryConfig({ REGISTRY_HOST: '0.0.0.0' })).toThrow(/REGISTRY_BASIC_AUTH_USER_INFO is not set/);
    expect(loadRegistryConfig({ REGISTRY_HOST: '0.0.0.0', REGISTRY_ALLOW_ANONYMOUS: 'true' }).basicAuth).toBeUndefined();
    expect(loadRegistryConfig({ REGISTRY_HOST: '0.0.0.0', REGISTRY_BASIC_AUTH_USER_INFO: 'u:p' }).basicAuth).toMatchObject({ username: 'u', password: 'p' });
  });
});

describe('classify: refused credentials and certificates', () => {
  const endpoints = stackEndpoints(loadStackConfig({}));
  it('a SASL failure is AUTH_FAILED, not retriable, naming the Kafka settings', () => {
    const c = classify(new kerr.KafkaJSSASLAuthenticationError!('SASL SCRAM SHA512 authentication failed: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512'), { endpoints });
    expect(c.retriable).toBe(false);
    expect(c.error).toBeInstanceOf(AuthFailedError);
    expect(c.error.message).toMatch(/KAFKA_SASL_PASSWORD/);
  });
  it('a TLS verification failure wrapped in kafkajs retries is AUTH_FAILED naming the CA setting', () => {
    const conn = new kerr.KafkaJSConnectionError!('Connection error: self-signed certificate in certificate chain', { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    const c = classify(new kerr.KafkaJSNumberOfRetriesExceeded!(conn, { retryCount: 5, retryTime: 1000 }), { endpoints });
    expect(c.retriable).toBe(false);
    expect(c.error.message).toMatch(/TLS certificate check failed for Kafka.*KAFKA_SSL_CA_FILE/);
  });
  it('a Postgres password failure names the URL setting; Redis WRONGPASS names REDIS_PASSWORD', () => {
    const e = new pg.DatabaseError('password authentication failed for user "capture"', 0, 'error');
    Object.assign(e, { code: '28P01', severity: 'FATAL' });
    const src = postgresEndpoint('source', 'postgres://capture@127.0.0.1:5432/shop', 'SOURCE_DATABASE_URL');
    const c = classify(e, { via: src, endpoints: [src] });
    expect(c.retriable).toBe(false);
    expect(c.error.message).toMatch(/authentication refused by Postgres \(source\) at 127\.0\.0\.1:5432 \(SOURCE_DATABASE_URL\).*check the user and password in SOURCE_DATABASE_URL/);
    const r = classify(Object.assign(new Error('WRONGPASS invalid username-password pair or user is disabled.'), { name: 'ReplyError' }), { endpoints });
    expect(r.retriable).toBe(false);
    expect(r.error.message).toMatch(/REDIS_USERNAME \/ REDIS_PASSWORD/);
  });
});
