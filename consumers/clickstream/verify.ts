import { isMain } from '../../src/lifecycle/is-main.ts';
import { exitOnStartupError } from '../../src/lifecycle/run-main.ts';
import { createWarehousePool } from '../../src/sinks/postgres/pool.ts';
import { rebuildClickstream, verifyClickstream } from './batch-recompute.ts';
import { loadClickstreamConfig } from './config.ts';

/**
 * `shopstream verify clickstream [--rebuild]` (or `npx tsx consumers/clickstream/verify.ts [--rebuild]`)
 * Compares every clickstream model with its batch recomputation and prints
 * one line per table; exit code 1 when any differs. With --rebuild, first
 * refreshes the stored models from stg_events (after editing
 * `_beyond_lateness` flags, or to repair), in one transaction.
 */
/** Resolves to the exit code: 0 when every model equals its batch recomputation, 1 otherwise. */
export async function runClickstreamVerify(opts: { rebuild?: boolean } = {}): Promise<number> {
  const cfg = loadClickstreamConfig();
  const pool = createWarehousePool(cfg.stack.warehouseUrl, 1);
  const client = await pool.connect();
  try {
    if (opts.rebuild) {
      await client.query('BEGIN');
      await rebuildClickstream(client, cfg.schemas);
      await client.query('COMMIT');
    }
    const checks = await verifyClickstream(client, cfg.schemas);
    for (const c of checks) {
      process.stdout.write(`${c.missing === 0 && c.unexpected === 0 ? 'ok  ' : 'DIFF'} ${c.table}: ${c.actualRows} rows (batch ${c.expectedRows}), missing ${c.missing}, unexpected ${c.unexpected}\n`);
      for (const row of c.sample) process.stdout.write(`     ${JSON.stringify(row)}\n`);
    }
    return checks.every((c) => c.missing === 0 && c.unexpected === 0) ? 0 : 1;
  } finally {
    client.release();
    await pool.end();
  }
}

if (isMain(import.meta.url)) {
  runClickstreamVerify({ rebuild: process.argv.includes('--rebuild') }).then((code) => {
    process.exitCode = code;
  }, (err) => exitOnStartupError('clickstream-verify', err));
}
