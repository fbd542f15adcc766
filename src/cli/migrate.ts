import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { ConfigError } from '../errors.ts';
import { postgresEndpoint } from '../lifecycle/endpoints.ts';
import { oneShotWaitMs, withRetry } from '../lifecycle/retry.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { migrate, type MigrationSet } from '../migrations/runner.ts';

/**
 * `npm run migrate [source|warehouse|all]`: applies pending migrations to the
 * configured databases. A database that does not answer is waited for up to
 * STARTUP_WAIT_MS (15 s), then the command exits 1 with one line naming it.
 */
async function main(): Promise<void> {
  const log = createLogger('migrate');
  const which = process.argv[2] ?? 'all';
  if (!['source', 'warehouse', 'all'].includes(which)) {
    throw new ConfigError(`unknown migration set "${which}" (expected source, warehouse or all)`);
  }
  const cfg = loadStackConfig();
  const maxWaitMs = oneShotWaitMs();
  const targets: [MigrationSet, string, string][] = [];
  if (which !== 'warehouse') targets.push(['source', cfg.sourceUrl, 'SOURCE_DATABASE_URL']);
  if (which !== 'source') targets.push(['warehouse', cfg.warehouseUrl, 'WAREHOUSE_DATABASE_URL']);
  for (const [set, url, setting] of targets) {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const applied = await withRetry(() => migrate(pool, set, { log }), { what: `${set} migrations`, log, maxWaitMs, via: postgresEndpoint(set, url, setting) });
      log.info({ set, applied: applied.length }, 'migrations up to date');
    } finally {
      await pool.end();
    }
  }
}

main().catch((err) => exitOnStartupError('migrate', err));
