import { appendFile, mkdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { createHarness, REPO, startInProcess, waitFor } from './harness.ts';
import { uniqueId } from '../../test/helpers/stack-env.ts';

/**
 * Incremental re-snapshot throughput and memory: ROWS products rows, read in
 * CHUNK-row chunks while the capture streams nothing else. Prints rows/s and
 * the process's peak RSS (appended to bench-results/resnapshot.jsonl).
 * `tsx bench/capture/resnapshot.ts [rows] [chunk]`
 */
const ROWS = Number(process.argv[2] ?? 200_000);
const CHUNK = process.argv[3] ?? '4096';
const h = await createHarness(uniqueId('bench_resnap'));
try {
  const s = h.id;
  await h.pool.query(`INSERT INTO ${s}.products (product_id, product_name, category, price, rating, updated_at)
    SELECT g, 'product ' || g, 'cat' || (g % 20), g % 1000 + 0.99, 4.5, now() FROM generate_series(1, ${ROWS}) g`);
  await h.pool.query(`ANALYZE ${s}.products`);
  const cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_SNAPSHOT_CHUNK_SIZE: CHUNK }));
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 50);
  const t0 = Date.now();
  await h.pool.query("SELECT pg_logical_emit_message(true, 'shopstream.snapshot', $1)", [`${s}.products`]);
  const pending = async () => (await h.pool.query(`SELECT count(*)::int AS n FROM ${s}_meta.capture_incremental_snapshots`)).rows[0].n as number;
  await waitFor('re-snapshot requested', async () => ((await pending()) > 0 ? true : null), 60_000);
  await waitFor('re-snapshot done', async () => ((await pending()) === 0 ? true : null), 3_600_000);
  const ms = Date.now() - t0;
  clearInterval(timer);
  const result = JSON.stringify({
    at: new Date().toISOString(), rows: ROWS, chunk: Number(CHUNK), ms, rowsPerSec: Math.round(ROWS / (ms / 1000)),
    rssStartMiB: Math.round(rss0 / 2 ** 20), rssPeakMiB: Math.round(peak / 2 ** 20), loadAvg1m: Math.round(loadavg()[0]! * 10) / 10,
  });
  console.log(result);
  await mkdir(`${REPO}/bench-results`, { recursive: true });
  await appendFile(`${REPO}/bench-results/resnapshot.jsonl`, `${result}\n`);
  await cap.stop();
} finally {
  await h.cleanup();
}
