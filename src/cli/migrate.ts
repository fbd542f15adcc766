import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { migrate, type MigrationSet } from '../migrations/runner.ts';

/** `npm run migrate [source|warehouse|all]`: applies pending migrations to the configured databases. */
async function main(): Promise<void> {
  const log = createLogger('migrate');
  const which = process.argv[2] ?? 'all';
  if (!['source', 'warehouse', 'all'].includes(which)) {
    throw new Error(`unknown migration set "${which}" (expected source, warehouse or all)`);
  }
  const cfg = loadStackConfig();
  const targets: [MigrationSet, string][] = [];
  if (which !== 'warehouse') targets.push(['source', cfg.sourceUrl]);
  if (which !== 'source') targets.push(['warehouse', cfg.warehouseUrl]);
  for (const [set, url] of targets) {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const applied = await migrate(pool, set, { log });
      log.info({ set, applied: applied.length }, 'migrations up to date');
    } finally {
      await pool.end();
    }
  }
}

main().catch((err) => exitOnStartupError('migrate', err));
