import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { runMain } from '../lifecycle/run-main.ts';
import { CaptureService, RESNAPSHOT_PREFIX } from '../source/capture.ts';
import { loadCaptureConfig } from '../source/capture-config.ts';

/**
 * Capture process: Postgres slot -> Kafka (Avro, Debezium envelope).
 * Configuration from the environment (see docs/capture.md). A fatal error
 * exits non-zero without confirming the slot further; a restart resumes.
 *
 *   shopstream capture                          run the capture
 *   shopstream snapshot s.table                 ask the running capture to re-read one table
 *                                               (incremental, in chunks, while it streams; docs/capture.md)
 *   tsx src/cli/capture.ts [resnapshot s.table] the same, without the CLI
 */
export const RESNAPSHOT_TABLE = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/;

/** Asks the running capture to re-read `table` (schema.table); returns the LSN of the request. */
export async function requestResnapshot(table: string): Promise<string> {
  // The signal travels through the WAL, so it is ordered with the changes around it and survives restarts.
  const client = new pg.Client({ connectionString: loadStackConfig().sourceUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ lsn: string }>('SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn', [RESNAPSHOT_PREFIX, table]);
    return rows[0]!.lsn;
  } finally {
    await client.end();
  }
}

export async function runCapture(): Promise<void> {
  // A fatal capture error stops the capture without confirming further; runMain
  // then restarts it in-process when the cause is retriable (Kafka away), else exits 1.
  await runMain('capture', (log, ctx) => {
    const cfg = loadCaptureConfig();
    return [new CaptureService(cfg, log, (err) => ctx.fatal(err))];
  });
}

if (isMain(import.meta.url)) {
  const [command, arg] = process.argv.slice(2);
  if (command === 'resnapshot') {
    if (!arg || !RESNAPSHOT_TABLE.test(arg)) {
      process.stderr.write('usage: capture resnapshot <schema.table>\n');
      process.exit(2);
    }
    const lsn = await requestResnapshot(arg);
    process.stdout.write(`re-snapshot of ${arg} requested at ${lsn}\n`);
  } else if (command !== undefined) {
    process.stderr.write(`unknown command "${command}"; usage: capture [resnapshot <schema.table>]\n`);
    process.exit(2);
  } else {
    await runCapture();
  }
}
