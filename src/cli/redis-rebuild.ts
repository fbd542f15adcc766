import { Command, InvalidArgumentError } from 'commander';
import { connectRedis } from '../sinks/redis/connect.ts';
import { createRedisClient, describeRedis } from '../sinks/redis/redis-client.ts';
import pg from 'pg';
import { rebuildRedisClv, type RebuildProgress } from '../api/clv-rebuild.ts';
import { CliProgress } from './progress.ts';
import { loadClvStoreConfig } from '../api/config.ts';
import { redactUrl } from '../config/env.ts';
import { AuthFailedError, UnavailableError } from '../errors.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';

/**
 * `npm run redis:rebuild [-- --page-size N]`: refills the CLV hashes in
 * Redis from Postgres (see src/api/clv-rebuild.ts for why it is safe next to
 * running consumers). Same env as the API: WAREHOUSE_DATABASE_URL,
 * REDIS_URL or REDIS_CLUSTER_NODES, ANALYTICS_SCHEMA, REDIS_KEY_PREFIX.
 */
function pageSize(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 10_000) throw new InvalidArgumentError('must be an integer from 1 to 10000');
  return n;
}

function describe(p: RebuildProgress): string {
  const pct = p.total > 0 ? Math.min(100, Math.floor((p.rows / p.total) * 100)) : 100;
  const refill = `rows ${p.rows}/${p.total} (${pct}%), written ${p.written}, unchanged or newer in Redis ${p.unchanged}`;
  return p.phase === 'refill' ? refill : `${refill}; keys checked ${p.scanned}, removed ${p.removed}`;
}

/** The `redis rebuild` command's flags (`name`: how the caller calls it). */
export function redisRebuildCommand(name = 'redis:rebuild'): Command {
  return new Command(name)
    .description('Refill the CLV hashes in Redis from analytics.customer_lifetime_value')
    .option('--page-size <n>', 'rows per Postgres page and Redis pipeline', pageSize, 1000);
}

export async function runRedisRebuild(opts: { pageSize: number }): Promise<void> {
  const cfg = loadClvStoreConfig();
  const log = createLogger('redis-rebuild');

  const pool = new pg.Pool({ connectionString: cfg.warehouseUrl, max: 2, application_name: 'redis-rebuild' });
  const redis = createRedisClient(cfg, { lazyConnect: true, connectTimeout: 5_000, maxRetriesPerRequest: 3 });
  redis.on('error', () => {}); // surfaced by connect() and the commands themselves
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  process.once('SIGTERM', () => controller.abort());

  // A bar over the rows while refilling, then a count of the keys checked (their number is not known up front).
  let progress: CliProgress | undefined;
  let phase: RebuildProgress['phase'] | undefined;
  const started = Date.now();
  const onProgress = (p: RebuildProgress) => {
    if (p.phase !== phase) {
      progress?.finish(phase === 'refill' ? `${p.written} written, ${p.unchanged} unchanged or newer in Redis` : 'done');
      phase = p.phase;
      progress = p.phase === 'refill'
        ? new CliProgress({ label: 'redis rebuild: refill', unit: 'rows', total: p.total })
        : new CliProgress({ label: 'redis rebuild: stale keys', unit: 'keys checked', total: null });
    }
    progress!.update(p.phase === 'refill' ? p.rows : p.scanned, p.phase === 'refill' ? p.total : undefined);
  };

  try {
    await connectRedis(redis).catch((err: Error) => {
      if (err instanceof AuthFailedError) throw err;
      throw new UnavailableError('SINK_UNAVAILABLE', `${describeRedis(cfg)} is not reachable: ${err.message}`, { cause: err });
    });
    log.info({ warehouse: redactUrl(cfg.warehouseUrl), redis: describeRedis(cfg), analyticsSchema: cfg.analyticsSchema, keyPrefix: cfg.redisKeyPrefix }, 'rebuilding Redis CLV');
    const result = await rebuildRedisClv({
      pool, redis, analyticsSchema: cfg.analyticsSchema, keyPrefix: cfg.redisKeyPrefix,
      pageSize: opts.pageSize, onProgress, signal: controller.signal,
    });
    progress?.finish(phase === 'remove' ? `${result.removed} removed` : 'done');
    process.stdout.write(`redis:rebuild done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${describe(result)}\n`);
  } finally {
    redis.disconnect();
    await pool.end();
  }
}

if (isMain(import.meta.url)) {
  runRedisRebuild(redisRebuildCommand().parse().opts<{ pageSize: number }>()).catch((err) => exitOnStartupError('redis:rebuild', err));
}
