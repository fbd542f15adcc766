import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { ConfigError, MigrationError } from '../errors.ts';
import { postgresEndpoint } from '../lifecycle/endpoints.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { oneShotWaitMs, withRetry } from '../lifecycle/retry.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { migrate, type MigrationSet, type SchemaNames } from '../migrations/runner.ts';
import { loadCaptureConfig } from '../source/capture-config.ts';
import { currentRole, missingCapturePrivileges, type MissingPrivilege } from '../source/privileges.ts';
import { tablesInSchemas } from '../source/slot.ts';

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
      let applied: unknown[];
      try {
        applied = await withRetry(() => migrate(pool, set, { log, schemas: opts.schemas }), { what: `${set} migrations`, log, maxWaitMs, via: postgresEndpoint(set, url, setting) });
      } catch (err) {
        if (set !== 'source' || !insufficientPrivilege(err)) throw err;
        const missing = await captureGaps(pool);
        throw new MigrationError(`the role ${await currentRole(pool)} (SOURCE_DATABASE_URL) may not apply the source migrations: ${insufficientPrivilege(err)}; `
          + `an administrator applies them${missing.length ? ` and runs the SQL printed above` : ''} (docs/security.md)`, { cause: err });
      }
      log.info({ set, applied: applied.length }, 'migrations up to date');
      if (set === 'source') {
        const missing = await captureGaps(pool);
        if (missing.length > 0) {
          throw new MigrationError(`the role ${await currentRole(pool)} (SOURCE_DATABASE_URL) lacks what the capture needs: ${missing.map((m) => m.what).join('; ')}; run the SQL printed above as an administrator (docs/security.md)`);
        }
      }
    } finally {
      await pool.end();
    }
  }
}

/** The message of a Postgres insufficient_privilege (42501) anywhere in the error's chain. */
function insufficientPrivilege(err: unknown): string | undefined {
  for (let e: any = err, i = 0; e && i < 8; e = e.cause, i++) if (e.code === '42501') return String(e.message);
  return undefined;
}

/** What the capture would lack under this role; the SQL that grants it goes to stderr, one statement a line, for an administrator to run. */
async function captureGaps(pool: pg.Pool): Promise<MissingPrivilege[]> {
  const cfg = loadCaptureConfig({ ...process.env, CAPTURE_METRICS_PORT: '-1' });
  const tables = cfg.tables ?? (await tablesInSchemas(pool, cfg.schemas));
  const missing = await missingCapturePrivileges(pool, { tables, publication: cfg.publication, metaSchema: cfg.metaSchema });
  if (missing.length > 0) {
    process.stderr.write(`-- the capture's role lacks: ${missing.map((m) => m.what).join('; ')}. As an administrator, run:\n${missing.map((m) => m.sql).join('\n')}\n`);
  }
  return missing;
}

if (isMain(import.meta.url)) runMigrate(process.argv[2]).catch((err) => exitOnStartupError('migrate', err));
