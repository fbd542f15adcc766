import { describe, expect, it } from 'vitest';
import { loadStackConfig } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';

describe('loadStackConfig validation', () => {
  it('moves its defaults to a throw-away stack\'s STACK_*_PORT, and an explicit URL still wins', () => {
    const c = loadStackConfig({ STACK_PG_PORT: '45432', STACK_KAFKA_PORT: '49092', STACK_REGISTRY_PORT: '48081', STACK_REDIS_PORT: '46379' });
    expect(c).toMatchObject({
      sourceUrl: 'postgres://postgres@127.0.0.1:45432/shop', warehouseUrl: 'postgres://postgres@127.0.0.1:45432/warehouse',
      kafkaBrokers: ['127.0.0.1:49092'], registryUrl: 'http://127.0.0.1:48081', redisUrl: 'redis://127.0.0.1:46379',
    });
    expect(loadStackConfig({ STACK_PG_PORT: '45432', SOURCE_DATABASE_URL: 'postgres://u@db:5432/shop' }).sourceUrl).toBe('postgres://u@db:5432/shop');
    expect(() => loadStackConfig({ STACK_PG_PORT: 'x' })).toThrow(/^STACK_PG_PORT /);
  });

  it('accepts the defaults and ordinary broker lists', () => {
    expect(loadStackConfig({}).kafkaBrokers).toEqual(['127.0.0.1:59092']);
    expect(loadStackConfig({ KAFKA_BROKERS: 'kafka-1.internal:9092, kafka-2:9093,[::1]:9092' }).kafkaBrokers).toEqual(['kafka-1.internal:9092', 'kafka-2:9093', '[::1]:9092']);
  });

  it.each([':::', 'localhost', 'host:0', 'host:70000', ':9092', 'a b:9092', 'host:9092,:::'])('refuses KAFKA_BROKERS=%s with one line naming it', (v) => {
    expect(() => loadStackConfig({ KAFKA_BROKERS: v })).toThrow(ConfigError);
    expect(() => loadStackConfig({ KAFKA_BROKERS: v })).toThrow(/^KAFKA_BROKERS must list brokers as host:port/);
  });

  it.each([
    ['SOURCE_DATABASE_URL', 'not a url'],
    ['WAREHOUSE_DATABASE_URL', 'http://127.0.0.1:5432/x'],
    ['SCHEMA_REGISTRY_URL', 'http://'],
    ['REDIS_URL', 'redis://:99999'],
    ['REDIS_URL', 'localhost:6379'],
  ])('refuses %s=%s', (name, v) => {
    expect(() => loadStackConfig({ [name]: v })).toThrow(ConfigError);
    expect(() => loadStackConfig({ [name]: v })).toThrow(new RegExp(`^${name} `));
  });

  it('never echoes a password from a bad URL', () => {
    expect(() => loadStackConfig({ SOURCE_DATABASE_URL: 'mysql://u:s3cret@h/db' })).toThrow(ConfigError);
    try {
      loadStackConfig({ WAREHOUSE_DATABASE_URL: 'postgres://u:s3cret@/db' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('s3cret');
    }
  });

  it('accepts a Unix-socket Postgres URL', () => {
    expect(loadStackConfig({ SOURCE_DATABASE_URL: 'postgres:///shop?host=/run/postgresql' }).sourceUrl).toContain('host=');
  });
});
