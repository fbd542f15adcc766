import { createHarness, startInProcess, waitFor } from './harness.ts';
import { writeBacklog } from './backlog.ts';
import { parseLsn } from '../../src/source/lsn.ts';

// Quick profiling run: backlog of N changes, drained by an in-process capture.
const N = Number(process.argv[2] ?? 200_000);
const h = await createHarness('prof_' + Math.random().toString(36).slice(2, 8));
try {
let cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never' }));
await cap.stop();
const { changes, endLsn } = await writeBacklog(h.pool, h.id, N);
console.log('backlog', changes, endLsn);
const t0 = Date.now();
const cpu0 = process.cpuUsage();
cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_HEARTBEAT_MS: '0', CAPTURE_PROGRESS_LOG_MS: '2000', ...JSON.parse(process.env.BENCH_ENV ?? '{}') }));
await waitFor('drain', async () => cap.confirmedLsn >= parseLsn(endLsn) - 1000n || null, 600_000);
const s = (Date.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
console.log(`drained ${changes} in ${s}s = ${Math.round(changes / s)}/s, cpu ${((cpu.user + cpu.system) / 1e6).toFixed(1)}s = ${Math.round(changes / ((cpu.user + cpu.system) / 1e6))}/cpu-s, rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`);
await cap.stop();
} finally {
  // drops the slot, schema and topics even when the run fails
  await h.cleanup();
}
