import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { redactUrl } from '../config/env.ts';
import type { RedisConnection } from '../config/redis.ts';
import { createRedisClient, describeRedis, type RedisClient, type RedisTarget } from '../sinks/redis/redis-client.ts';
import { AuthFailedError } from '../errors.ts';
import { connectRedis } from '../sinks/redis/connect.ts';
import type { Service } from '../lifecycle/service.ts';
import type { Logger } from '../logger.ts';
import { sleep } from '../util/sleep.ts';
import { buildApiApp } from './app.ts';
import { ClvPostgres } from './clv-pg.ts';
import type { ClvFastLane } from './fast-lane.ts';
import { RedisClvStore } from './clv-store.ts';
import type { ApiConfig } from './config.ts';
import { ApiMetrics } from './metrics.ts';
import type { StatusPageConfig } from './status/config.ts';
import { StatusSampler } from './status/sampler.ts';

/**
 * Lookup-side Redis client. Fails fast instead of queueing: with no offline
 * queue, a command while disconnected rejects at once, and commandTimeout
 * bounds a stalled server, so each lookup falls back to Postgres within
 * `timeoutMs` whatever state Redis is in. Reconnects in the background.
 */
export function createLookupRedis(conn: RedisTarget | RedisConnection | string, timeoutMs: number, log: Logger): RedisClient {
  const target: RedisTarget = typeof conn === 'string' ? { redisUrl: conn, redisClusterNodes: null }
    : 'url' in conn ? { redisUrl: conn.url, redisClusterNodes: null, redis: conn } : conn;
  const redis = createRedisClient(target, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: timeoutMs,
    connectTimeout: 1_000,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
    // No auto-pipelining: it wraps every batch in a Pipeline object, which
    // measured more CPU per lookup than it saved; RedisClvStore batches the
    // socket writes of a loop turn itself (src/api/clv-store.ts).
    enableAutoPipelining: false,
  });
  // ioredis emits 'error' on every failed reconnect; ClvLookup logs the outage once, so this stays at debug.
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis connection error'));
  return redis;
}

/** The CLV API as a Service: Postgres pool, Redis client and the HTTP listener. */
export class ApiService implements Service {
  readonly name = 'clv-api';
  private pool: pg.Pool | undefined;
  private redis: RedisClient | undefined;
  private app: FastifyInstance | undefined;
  private stopping: Promise<void> | undefined;
  private boundUrl: string | undefined;
  private sampler: StatusSampler | undefined;
  private lane: ClvFastLane | undefined;

  constructor(
    private readonly config: ApiConfig,
    private readonly log: Logger,
    /** The status page's sampling (src/api/status); without it the API serves no /status. */
    private readonly statusPage?: StatusPageConfig,
  ) {}

  /** Base URL once listening, e.g. http://127.0.0.1:58080 (the real port when configured with 0). */
  get url(): string {
    if (!this.boundUrl) throw new Error('CLV API is not listening');
    return this.boundUrl;
  }

  /** Lookups the fast lane answered (src/api/fast-lane.ts); undefined when it is off. */
  get fastLaneServed(): number | undefined {
    return this.lane?.served;
  }

  async start(signal: AbortSignal): Promise<void> {
    const { config, log } = this;
    this.pool = new pg.Pool({
      connectionString: config.warehouseUrl,
      max: config.pgPoolMax,
      application_name: 'clv-api',
      connectionTimeoutMillis: 2_000,
      statement_timeout: config.pgStatementTimeoutMs,
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on('error', (err) => log.warn({ err }, 'idle warehouse connection failed'));
    this.redis = createLookupRedis(config, config.redisTimeoutMs, log);
    // Waited for briefly, so the first lookups after start-up do not all miss
    // Redis, but not a condition of start-up: Postgres alone can serve, and
    // the client keeps reconnecting in the background.
    let refused: AuthFailedError | undefined;
    const connected = connectRedis(this.redis).then(() => true, (err: Error) => {
      if (err instanceof AuthFailedError) refused = err;
      else log.warn({ err: err.message, redis: describeRedis(config) }, 'Redis not reachable at start-up; serving from Postgres');
      return false;
    });
    await Promise.race([connected, sleep(1_000, signal)]);
    if (signal.aborted) return;
    // Postgres could serve alone, but credentials that are wrong now stay wrong: say so at start-up.
    if (refused) throw refused;

    const clvPg = new ClvPostgres(this.pool, config.analyticsSchema);
    const metrics = new ApiMetrics();
    const sp = this.statusPage;
    if (sp) {
      this.sampler = new StatusSampler({
        targets: sp.targets, clv: clvPg, intervalMs: sp.sampleMs, capacity: sp.historySize, log: log.child({ component: 'status-page' }),
        onClv: (clv) => {
          if (clv.error) return;
          metrics.clvSegments.reset();
          for (const s of clv.segments) metrics.clvSegments.set({ value_segment: s.valueSegment, frequency_segment: s.frequencySegment }, s.customers);
        },
      });
    }
    const built = buildApiApp({
      pg: clvPg,
      cache: new RedisClvStore(this.redis, config.redisKeyPrefix),
      metrics,
      recency: config.recency,
      authToken: config.authToken,
      fastLane: config.fastLane,
      log,
      status: this.sampler && sp ? { sampler: this.sampler, sampleMs: sp.sampleMs, slot: sp.targets.slot } : undefined,
    });
    this.app = built.app;
    this.lane = built.lane;
    await this.app.listen({ host: config.host, port: config.port });
    const addr = this.app.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.boundUrl = `http://${host}:${addr.port}`;
    if (this.sampler && sp) {
      // The API checks itself where it really listens (port 0 in tests, a wildcard address in containers).
      const self = sp.targets.processes.find((p) => p.name === 'api');
      if (self) self.readyUrl = `${this.boundUrl.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:')}/readyz`;
      this.sampler.start(signal);
    }
    log.info({
      url: this.boundUrl,
      warehouse: redactUrl(config.warehouseUrl),
      redis: describeRedis(config),
      analyticsSchema: config.analyticsSchema,
      redisKeyPrefix: config.redisKeyPrefix,
      auth: config.authToken !== undefined ? 'bearer' : 'off',
      recency: config.recency,
      fastLane: config.fastLane,
      statusPage: this.sampler ? `${this.boundUrl}/status` : 'off',
    }, 'listening');
  }

  stop(): Promise<void> {
    this.stopping ??= this.close();
    return this.stopping;
  }

  private async close(): Promise<void> {
    // The sampler first (it reads through the pool and calls this listener), then
    // stop accepting requests and let in-flight ones finish before the clients go.
    await this.sampler?.stop();
    await this.app?.close();
    this.redis?.disconnect();
    await this.pool?.end();
  }
}
