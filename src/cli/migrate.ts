import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { migrate, type MigrationSet, type SchemaNames } from '../migrations/runner.ts';

export const MIGRATION_TARGETS = ['source', 'warehouse', 'all'] as const;

/**
 * `shopstream migrate [source|warehouse|all]` (`npm run migrate`): applies
 * pending migrations to the configured databases, into the default schemas
 * unless `schemas` names others.
 */
export async function runMigrate(which: string = 'all', opts: { schemas?: Partial<SchemaNames> } = {}): Promise<void> {
  const log = createLogger('migrate');
  if (!(MIGRATION_TARGETS as readonly string[]).includes(which)) {
    throw new Error(`unknown migration set "${which}" (expected source, warehouse or all)`);
  }
  const cfg = loadStackConfig();
  const targets: [MigrationSet, string][] = [];
  if (which !== 'warehouse') targets.push(['source', cfg.sourceUrl]);
  if (which !== 'source') targets.push(['warehouse', cfg.warehouseUrl]);
  for (const [set, url] of targets) {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const applied = await migrate(pool, set, { log, schemas: opts.schemas });
      log.info({ set, applied: applied.length }, 'migrations up to date');
    } finally {
      await pool.end();
    }
  }
}

if (isMain(import.meta.url)) runMigrate(process.argv[2]).catch((err) => exitOnStartupError('migrate', err));
