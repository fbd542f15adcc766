import { Command, InvalidArgumentError } from 'commander';
import pg from 'pg';
import { rebuildRedisClv, type RebuildProgress } from '../api/clv-rebuild.ts';
import { loadClvStoreConfig } from '../api/config.ts';
import { redactUrl } from '../config/env.ts';
import { createRedisClient, describeRedis } from '../sinks/redis/redis-client.ts';
import { UnavailableError } from '../errors.ts';
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

  // On a terminal one line redrawn in place; elsewhere (CI, logs) a line at most every 2 s.
  const tty = process.stderr.isTTY;
  let lastPrint = 0;
  const started = Date.now();
  const onProgress = (p: RebuildProgress) => {
    const now = Date.now();
    if (tty) process.stderr.write(`\r${describe(p)}\x1b[K`);
    else if (now - lastPrint >= 2_000) {
      process.stderr.write(`redis:rebuild: ${describe(p)}\n`);
      lastPrint = now;
    }
  };

  try {
    await redis.connect().catch((err: Error) => {
      throw new UnavailableError('SINK_UNAVAILABLE', `${describeRedis(cfg)} is not reachable: ${err.message}`, { cause: err });
    });
    log.info({ warehouse: redactUrl(cfg.warehouseUrl), redis: describeRedis(cfg), analyticsSchema: cfg.analyticsSchema, keyPrefix: cfg.redisKeyPrefix }, 'rebuilding Redis CLV');
    const result = await rebuildRedisClv({
      pool, redis, analyticsSchema: cfg.analyticsSchema, keyPrefix: cfg.redisKeyPrefix,
      pageSize: opts.pageSize, onProgress, signal: controller.signal,
    });
    if (tty) process.stderr.write('\n');
    process.stdout.write(`redis:rebuild done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${describe(result)}\n`);
  } finally {
    redis.disconnect();
    await pool.end();
  }
}

if (isMain(import.meta.url)) {
  runRedisRebuild(redisRebuildCommand().parse().opts<{ pageSize: number }>()).catch((err) => exitOnStartupError('redis:rebuild', err));
}
