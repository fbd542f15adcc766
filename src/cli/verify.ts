import { Command, InvalidArgumentError } from 'commander';
import pg from 'pg';
import { loadWarehouseConsumerConfig } from '../../consumers/warehouse/config.ts';
import { ConfigError } from '../errors.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { createLogger } from '../logger.ts';
import { postgresEndpoint } from '../lifecycle/endpoints.ts';
import { oneShotWaitMs, withRetry } from '../lifecycle/retry.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createWarehousePool, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { formatReport, runVerify } from '../rebuild/verify.ts';
import { CliProgress } from './progress.ts';

/**
 * `npm run verify [-- --json] [--source]`: recomputes every derived table
 * from staging in batch SQL and compares row for row, runs the data tests
 * (unique / not-null keys, fact → dimension relationships, SCD2 integrity,
 * CLV coverage) and, with --source, compares staging to the source rows.
 * Exit codes (docs/operations.md): 0 when everything holds, 1 with a report
 * naming tables and keys when not, 2 on bad configuration, 3 when verify
 * could not run (a database unreachable for STARTUP_WAIT_MS, a query
 * failed): "could not run" is never "not clean". Settings come from the consumer's env
 * (WAREHOUSE_DATABASE_URL, STAGING_SCHEMA, ANALYTICS_SCHEMA, CLV_*), flags win.
 */
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function ident(v: string): string {
  if (!IDENT.test(v)) throw new InvalidArgumentError('must be a lowercase identifier ([a-z_][a-z0-9_]*)');
  return v;
}

function sampleSize(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 100) throw new InvalidArgumentError('must be an integer from 1 to 100');
  return n;
}

export interface VerifyCliOptions {
  json?: boolean;
  source?: boolean;
  staging?: string;
  analytics?: string;
  sourceSchema?: string;
  samples: number;
}

/** The `verify` command's flags; `shopstream verify` and this file's own entry both parse with it. */
export function verifyCommand(): Command {
  return new Command('verify')
    .description('Compare every derived table with its batch recomputation and run the warehouse data tests')
    .option('--json', 'machine-readable report on stdout')
    .option('--source', 'also compare staging with the source database (SOURCE_DATABASE_URL)')
    .option('--staging <schema>', 'staging schema (default STAGING_SCHEMA or staging)', ident)
    .option('--analytics <schema>', 'analytics schema (default ANALYTICS_SCHEMA or analytics)', ident)
    .option('--source-schema <schema>', 'schema of the source tables (default SOURCE_SCHEMA or public)', ident)
    .option('--samples <n>', 'differing keys shown per table or check', sampleSize, 5);
}

/** Runs the checks and prints the report; resolves to the exit code. */
export async function runVerifyCli(opts: VerifyCliOptions): Promise<number> {
  const cfg = loadWarehouseConsumerConfig();
  const schemas: WarehouseSchemas = {
    staging: opts.staging ?? cfg.schemas.staging,
    analytics: opts.analytics ?? cfg.schemas.analytics,
    meta: cfg.schemas.meta,
  };
  const sourceSchema = opts.sourceSchema ?? cfg.sourceSchema;
  if (!IDENT.test(sourceSchema)) throw new ConfigError(`SOURCE_SCHEMA must be a lowercase identifier, got "${sourceSchema}"`);

  const pool = createWarehousePool(cfg.stack.warehouseUrl, 1);
  const sourcePool = opts.source ? new pg.Pool({ connectionString: cfg.stack.sourceUrl, max: 1, application_name: 'cdc-verify' }) : undefined;
  const log = createLogger('verify', process.env.LOG_LEVEL ?? 'warn');
  const maxWaitMs = oneShotWaitMs();
  const whEndpoint = postgresEndpoint('warehouse', cfg.stack.warehouseUrl, 'WAREHOUSE_DATABASE_URL');
  const srcEndpoint = postgresEndpoint('source', cfg.stack.sourceUrl, 'SOURCE_DATABASE_URL');
  const client = await withRetry(() => pool.connect(), { what: 'warehouse connection', log, maxWaitMs, via: whEndpoint })
    .catch(async (err) => { await Promise.all([pool.end(), sourcePool?.end()]); throw err; });
  const sourceClient = sourcePool
    ? await withRetry(() => sourcePool.connect(), { what: 'source connection', log, maxWaitMs, via: srcEndpoint })
      .catch(async (err) => { client.release(); await Promise.all([pool.end(), sourcePool.end()]); throw err; })
    : undefined;
  // Progress on stderr, so stdout stays the report (or the JSON) alone.
  let progress: CliProgress | undefined;
  try {
    await sourceClient?.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const report = await runVerify(client, schemas, {
      thresholds: cfg.thresholds,
      source: sourceClient ? { client: sourceClient, schema: sourceSchema } : undefined,
      sampleSize: opts.samples,
      onProgress: (done, total) => {
        progress ??= new CliProgress({ label: 'verify', unit: 'comparisons and checks', total });
        progress.update(done, total);
      },
    });
    progress?.finish(report.ok ? 'clean' : 'differences found');
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return report.ok ? 0 : 1;
  } finally {
    await sourceClient?.query('ROLLBACK').catch(() => {});
    sourceClient?.release();
    client.release();
    await Promise.all([pool.end(), sourcePool?.end()]);
  }
}

/** Could not run: distinct from 1 ("differences found"). */
export const VERIFY_COULD_NOT_RUN = 3;

export async function main(argv = process.argv): Promise<number> {
  return runVerifyCli(verifyCommand().parse(argv).opts<VerifyCliOptions>());
}

if (isMain(import.meta.url)) {
  main().then((code) => {
    process.exitCode = code;
  }, (err) => exitOnStartupError('verify', err, VERIFY_COULD_NOT_RUN));
}
