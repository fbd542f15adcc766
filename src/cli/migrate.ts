import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { ConfigError } from '../errors.ts';
import { postgresEndpoint } from '../lifecycle/endpoints.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { oneShotWaitMs, withRetry } from '../lifecycle/retry.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { migrate, type MigrationSet, type SchemaNames } from '../migrations/runner.ts';

export const MIGRATION_TARGETS = ['source', 'warehouse', 'all'] as const;

/**
 * `shopstream migrate [source|warehouse|all]` (`npm run migrate`): applies
 * pending migrations to the configured databases, into the default schemas
 * unless `schemas` names others. A database that does not answer is waited
 * for up to STARTUP_WAIT_MS (15 s), then the command exits 1 with one line
 * naming it.
 */
export async function runMigrate(which: string = 'all', opts: { schemas?: Partial<SchemaNames> } = {}): Promise<void> {
  const log = createLogger('migrate');
  if (!(MIGRATION_TARGETS as readonly string[]).includes(which)) {
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
      const applied = await withRetry(() => migrate(pool, set, { log, schemas: opts.schemas }), { what: `${set} migrations`, log, maxWaitMs, via: postgresEndpoint(set, url, setting) });
      log.info({ set, applied: applied.length }, 'migrations up to date');
    } finally {
      await pool.end();
    }
  }
}

if (isMain(import.meta.url)) runMigrate(process.argv[2]).catch((err) => exitOnStartupError('migrate', err));
