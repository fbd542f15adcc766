import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { runMain } from '../lifecycle/run-main.ts';
import { CaptureService, RESNAPSHOT_PREFIX } from '../source/capture.ts';
import { loadCaptureConfig } from '../source/capture-config.ts';

/**
 * Capture process: Postgres slot -> Kafka (Avro, Debezium envelope).
 * Configuration from the environment (see docs/capture.md). A fatal error
 * exits non-zero without confirming the slot further; a restart resumes.
 *
 *   tsx src/cli/capture.ts                      run the capture
 *   tsx src/cli/capture.ts resnapshot s.table   ask the running capture to re-read one table
 *                                               (incremental, in chunks, while it streams; docs/capture.md)
 */
const [command, arg] = process.argv.slice(2);
if (command === 'resnapshot') {
  if (!arg || !/^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/.test(arg)) {
    process.stderr.write('usage: capture resnapshot <schema.table>\n');
    process.exit(2);
  }
  // The signal travels through the WAL, so it is ordered with the changes around it and survives restarts.
  const client = new pg.Client({ connectionString: loadStackConfig().sourceUrl });
  await client.connect();
  const { rows } = await client.query<{ lsn: string }>('SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn', [RESNAPSHOT_PREFIX, arg]);
  await client.end();
  process.stdout.write(`re-snapshot of ${arg} requested at ${rows[0]!.lsn}\n`);
} else if (command !== undefined) {
  process.stderr.write(`unknown command "${command}"; usage: capture [resnapshot <schema.table>]\n`);
  process.exit(2);
} else {
  await runMain('capture', (log) => {
    const cfg = loadCaptureConfig();
    const svc = new CaptureService(cfg, log, (err) => {
      log.fatal({ err }, 'exiting after fatal capture error');
      process.exitCode = 1;
      setTimeout(() => process.exit(1), 100).unref();
    });
    return [svc];
  });
}
