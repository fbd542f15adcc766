import { describe, expect, it } from 'vitest';
import { loadApiConfig } from '../../src/api/config.ts';
import { ConfigError } from '../../src/errors.ts';

describe('loadApiConfig', () => {
  it('defaults to loopback, port 58080, no auth, the analytics schema, no key prefix and 30/90/180 days', () => {
    const c = loadApiConfig({});
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 58080,
      authToken: undefined,
      analyticsSchema: 'analytics',
      redisKeyPrefix: '',
      recency: { activeDays: 30, coolingDays: 90, atRiskDays: 180 },
      warehouseUrl: 'postgres://postgres@127.0.0.1:55432/warehouse',
      redisUrl: 'redis://127.0.0.1:56379',
    });
  });

  it('reads every setting from env', () => {
    const c = loadApiConfig({
      API_HOST: '0.0.0.0', API_PORT: '0', API_AUTH_TOKEN: 'abcdefghijklmnop', ANALYTICS_SCHEMA: 'an_x', REDIS_KEY_PREFIX: 'shop:',
      CLV_RECENCY_ACTIVE_DAYS: '7', CLV_RECENCY_COOLING_DAYS: '7', CLV_RECENCY_AT_RISK_DAYS: '365',
    });
    expect(c).toMatchObject({ host: '0.0.0.0', port: 0, authToken: 'abcdefghijklmnop', analyticsSchema: 'an_x', redisKeyPrefix: 'shop:', recency: { activeDays: 7, coolingDays: 7, atRiskDays: 365 } });
  });

  it.each([
    [{ API_AUTH_TOKEN: 'short' }, /API_AUTH_TOKEN/],
    [{ ANALYTICS_SCHEMA: 'Analytics; DROP' }, /ANALYTICS_SCHEMA/],
    [{ REDIS_KEY_PREFIX: 'a b' }, /REDIS_KEY_PREFIX/],
    [{ CLV_RECENCY_ACTIVE_DAYS: '100' }, /CLV_RECENCY_ACTIVE_DAYS <= CLV_RECENCY_COOLING_DAYS/],
    [{ CLV_RECENCY_AT_RISK_DAYS: 'x' }, /CLV_RECENCY_AT_RISK_DAYS must be an integer/],
    [{ API_PORT: '70000' }, /API_PORT/],
  ])('refuses %j with a one-line ConfigError naming the variable', (env, message) => {
    expect(() => loadApiConfig(env)).toThrow(ConfigError);
    expect(() => loadApiConfig(env)).toThrow(message);
  });
});
