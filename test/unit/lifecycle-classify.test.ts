import { createRequire } from 'node:module';
import net from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ConfigError, DecodeError, UnavailableError } from '../../src/errors.ts';
import { classify, rootMessage } from '../../src/lifecycle/classify.ts';
import { kafkaEndpoint, postgresEndpoint, redisEndpoint, registryEndpoint, stackEndpoints } from '../../src/lifecycle/endpoints.ts';
import { loadStackConfig } from '../../src/config/index.ts';

const require = createRequire(import.meta.url);
const kerr = require('kafkajs/src/errors') as Record<string, new (...a: any[]) => Error>;
const { createErrorFromCode } = require('kafkajs/src/protocol/error') as { createErrorFromCode(code: number): Error };

const endpoints = stackEndpoints(loadStackConfig({}));

/** A real refused connection: a port we just bound and closed. */
async function refused(): Promise<Error> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', (e) => resolve(e));
  });
}

function pgError(code: string, message: string): Error {
  const e = new pg.DatabaseError(message, 0, 'error');
  e.code = code;
  e.severity = 'FATAL';
  return e;
}

describe('classify', () => {
  it('names the server and the setting of a refused Postgres connection, with the stack hint', async () => {
    const e = await refused();
    const port = (e as unknown as { port: number }).port;
    const wh = postgresEndpoint('warehouse', `postgres://postgres@127.0.0.1:${port}/warehouse`, 'WAREHOUSE_DATABASE_URL');
    const c = classify(e, { endpoints: [wh] });
    expect(c.retriable).toBe(true);
    expect(c.error).toBeInstanceOf(UnavailableError);
    expect(c.error.code).toBe('SINK_UNAVAILABLE');
    expect(c.error.message).toMatch(/^cannot reach Postgres \(warehouse\) at 127\.0\.0\.1:\d+ \(WAREHOUSE_DATABASE_URL\): connect ECONNREFUSED/);
    // Not the stack's default port: the hint says to check the setting instead.
    expect(c.error.message).toMatch(/check that it runs and that WAREHOUSE_DATABASE_URL points at it$/);
  });

  it('suggests npm run stack:up for the local stack default address', () => {
    const e = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:55432'), { code: 'ECONNREFUSED', address: '127.0.0.1', port: 55432, syscall: 'connect' });
    const c = classify(e, { endpoints: endpoints.filter((x) => x.setting === 'SOURCE_DATABASE_URL') });
    expect(c.error.code).toBe('SOURCE_UNAVAILABLE');
    expect(c.error.message).toContain('Postgres (source) at 127.0.0.1:55432 (SOURCE_DATABASE_URL)');
    expect(c.error.message).toContain('npm run stack:up');
  });

  it('treats an AggregateError of refused attempts (node happy eyeballs) as retriable and finds its message', () => {
    const inner = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:56379'), { code: 'ECONNREFUSED', address: '127.0.0.1', port: 56379 });
    const agg = new AggregateError([inner], '');
    expect(rootMessage(agg)).toBe('connect ECONNREFUSED 127.0.0.1:56379');
    const c = classify(agg, { endpoints });
    expect(c.retriable).toBe(true);
    expect(c.error.code).toBe('REDIS_UNAVAILABLE');
    expect(c.error.message).toContain('Redis at 127.0.0.1:56379 (REDIS_URL)');
  });

  it('retries Postgres starting up, shutting down, restarting and connection exceptions; not bad SQL or auth', () => {
    for (const [code, msg] of [['57P03', 'the database system is starting up'], ['57P03', 'the database system is shutting down'], ['57P01', 'terminating connection due to administrator command'], ['08006', 'connection failure'], ['53300', 'too many clients already'], ['40P01', 'deadlock detected']]) {
      expect(classify(pgError(code!, msg!), { endpoints }).retriable, code).toBe(true);
    }
    expect(classify(new Error('Connection terminated unexpectedly'), { endpoints, via: endpoints[1] }).retriable).toBe(true);
    for (const [code, msg] of [['42P01', 'relation "x" does not exist'], ['28P01', 'password authentication failed'], ['3D000', 'database "nope" does not exist'], ['23505', 'duplicate key']]) {
      const c = classify(pgError(code!, msg!), { endpoints });
      expect(c.retriable, code).toBe(false);
      // A refused password is named as such (docs/security.md); the rest stay UNEXPECTED.
      expect(c.error.code).toBe(code === '28P01' ? 'AUTH_FAILED' : 'UNEXPECTED');
      expect(c.error.message).toContain(msg);
    }
  });

  it('retries kafkajs metadata-not-ready errors right after topic creation and connection errors', () => {
    const notHosted = new kerr.KafkaJSProtocolError!(createErrorFromCode(3));
    expect(notHosted.message).toMatch(/does not host this topic-partition/);
    const kafka = kafkaEndpoint(['127.0.0.1:59092']);
    const c = classify(notHosted, { endpoints: [kafka] });
    expect(c.retriable).toBe(true);
    expect(c.error.code).toBe('KAFKA_UNAVAILABLE');
    expect(c.error.message).toBe('Kafka at 127.0.0.1:59092 (KAFKA_BROKERS) is not ready: This server does not host this topic-partition');
    expect(classify(new kerr.KafkaJSProtocolError!(createErrorFromCode(5)), { endpoints }).retriable).toBe(true); // LEADER_NOT_AVAILABLE
    expect(classify(new kerr.KafkaJSProtocolError!(createErrorFromCode(6)), { endpoints }).retriable).toBe(true); // NOT_LEADER
    const conn = new kerr.KafkaJSConnectionError!('Connection error: connect ECONNREFUSED 127.0.0.1:59092', { broker: '127.0.0.1:59092' });
    expect(classify(new kerr.KafkaJSNumberOfRetriesExceeded!(conn, { retryCount: 5, retryTime: 1000 }), { endpoints }).retriable).toBe(true);
    // The consumer runner bails out on "no broker available" with a non-retriable wrapper: still a server that is down.
    const bailed = new kerr.KafkaJSNonRetriableError!(new kerr.KafkaJSNoBrokerAvailableError!('No broker available'), { cause: new kerr.KafkaJSNoBrokerAvailableError!('No broker available') });
    expect(classify(bailed, { endpoints }).retriable).toBe(true);
  });

  it('refuses to retry a message too large for the broker, even wrapped', () => {
    const tooLarge = new kerr.KafkaJSProtocolError!(createErrorFromCode(10));
    const wrapped = new kerr.KafkaJSNonRetriableError!(tooLarge, { cause: tooLarge });
    const c = classify(wrapped, { endpoints });
    expect(c.retriable).toBe(false);
    expect(c.error.code).toBe('KAFKA_REFUSED');
    expect(classify(new kerr.KafkaJSProtocolError!(createErrorFromCode(29)), { endpoints }).retriable).toBe(false); // TOPIC_AUTHORIZATION_FAILED
  });

  it('retries registry 5xx and unreachable, not 4xx', () => {
    const reg = registryEndpoint('http://127.0.0.1:58081');
    const fetchFailed = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:58081'), { code: 'ECONNREFUSED', address: '127.0.0.1', port: 58081 }) });
    const c = classify(fetchFailed, { endpoints: [reg] });
    expect(c.retriable).toBe(true);
    expect(c.error.code).toBe('SCHEMA_REGISTRY');
    expect(c.error.message).toContain('the schema registry at 127.0.0.1:58081 (SCHEMA_REGISTRY_URL)');
    const s503 = Object.assign(new Error('Service Unavailable'), { name: 'ResponseError', status: 503 });
    expect(classify(s503, { endpoints: [reg] }).retriable).toBe(true);
    const s422 = Object.assign(new Error('Invalid schema'), { name: 'ResponseError', status: 422 });
    expect(classify(s422, { endpoints: [reg] }).retriable).toBe(false);
  });

  it('retries Redis down (ioredis offline queue, max retries, LOADING)', () => {
    const r = redisEndpoint('redis://127.0.0.1:56379');
    for (const m of ["Stream isn't writeable and enableOfflineQueue options is false", 'Reached the max retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details.', 'Connection is closed.', 'LOADING Redis is loading the dataset in memory']) {
      const c = classify(new Error(m), { endpoints, via: r });
      expect(c.retriable, m).toBe(true);
      expect(c.error.code, m).toBe('REDIS_UNAVAILABLE');
    }
  });

  it('keeps the decision of the project\'s own errors and treats the unknown as fatal', () => {
    expect(classify(new ConfigError('X is bad')).retriable).toBe(false);
    expect(classify(new ConfigError('X is bad')).error.code).toBe('CONFIG_INVALID');
    expect(classify(new DecodeError('bad bytes')).retriable).toBe(false);
    expect(classify(new UnavailableError('KAFKA_UNAVAILABLE', 'down')).retriable).toBe(true);
    const c = classify(new TypeError('x is not a function'));
    expect(c.retriable).toBe(false);
    expect(c.error.code).toBe('UNEXPECTED');
  });
});
