import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type pg from 'pg';
import { REPO } from '../capture/harness.ts';
import { fullRefresh } from '../../consumers/warehouse/full-refresh.ts';
import { quoted } from '../../src/sinks/postgres/pool.ts';
import { createPipeline, loadavg, log, median, round, waitDrained } from './pipeline.ts';

/**
 * Rebuild: a backlog written with the demo generator (perTransaction orders
 * per source transaction) and captured into the bench's topics, then per run
 *  (b) `npm run replay -- --from-offset 0` (src/cli/replay.ts as a child
 *      process, wall time from spawn to exit: staging + history from the
 *      topics, set-based fullRefresh, handover, swap, Redis flush, cleanup);
 *  (a) the plain batch SQL full refresh (fullRefresh of
 *      consumers/warehouse/full-refresh.ts) of every derived table from the
 *      staging the replay just swapped in.
 * Same data, same machine, same run; ratio = replay / batch.
 *
 * BENCH_TREES=before=/tmp/x,after=. (name=dir, each a checkout with
 * node_modules): every run replays with each checkout's replay CLI, in
 * alternating order (ABBA), each followed by its own batch refresh, on one
 * backlog. Default: this checkout alone.
 */
const TREES = (process.env.BENCH_TREES ?? `this=${REPO}`).split(',').map((t) => {
  const i = t.indexOf('=');
  if (i < 1) throw new Error(`BENCH_TREES: "${t}" is not name=dir`);
  return { tree: t.slice(0, i), dir: resolve(t.slice(i + 1)) };
});
export interface RebuildOptions {
  customers: number;
  orders: number;
  perTransaction: number;
  runs: number;
  /** called after each run with the result so far (a long run saves as it goes) */
  onRun?: (partial: unknown) => void;
}

function runReplay(env: NodeJS.ProcessEnv, group: string, tree: string, cpuProf?: string): Promise<{ wallSeconds: number; summary: any; phases: Record<string, number>; stages: Record<string, number> }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const args = ['--import', 'tsx', ...(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProf}`] : []), 'src/cli/replay.ts', '--group', group, '--from-offset', '0', '--json'];
    const child = spawn(process.execPath, args, { cwd: tree, env: { ...env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const phases: Record<string, number> = {};
    // the consumer's stage timings (src/consumer/stage-timer.ts), summed over the replay, ms
    const stages: Record<string, number> = {};
    child.stdout!.on('data', (d) => {
      out += d;
      let nl: number;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        try {
          const j = JSON.parse(line);
          if (j.msg === 'stage timings') for (const [k, v] of Object.entries(j.stages as Record<string, { ms: number }>)) stages[k] = (stages[k] ?? 0) + v.ms;
          if (typeof j.msg === 'string' && j.msg.startsWith('replay:') && !/\d+\/\d+ messages/.test(j.msg)) phases[j.msg] = (Date.now() - t0) / 1000;
          if (j.rebuildGroup && j.messages !== undefined && !j.msg) phases.summary = j;
        } catch { /* progress bar or text */ }
      }
    });
    child.once('exit', (code) => {
      const wallSeconds = (Date.now() - t0) / 1000;
      if (code !== 0) return reject(new Error(`replay exited ${code}`));
      const summary = phases.summary;
      delete phases.summary;
      resolve({ wallSeconds, summary, phases, stages });
    });
  });
}

/** The pool fullRefresh gets: same connections, each statement's wall time recorded (to see which table dominates). */
function timedPool(pool: pg.Pool, into: { sql: string; ms: number }[]): pg.Pool {
  return new Proxy(pool, {
    get(target, prop) {
      if (prop !== 'connect') return Reflect.get(target, prop);
      return async () => {
        const client = await target.connect();
        const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
        (client as { query: unknown }).query = async (...a: unknown[]) => {
          const t = performance.now();
          try { return await query(...a); } finally {
            const text = typeof a[0] === 'string' ? a[0] : String((a[0] as { text?: string })?.text ?? '');
            into.push({ sql: text.replace(/\s+/g, ' ').slice(0, 90), ms: Math.round(performance.now() - t) });
          }
        };
        const release = client.release.bind(client);
        client.release = (e?: boolean | Error) => { (client as { query: unknown }).query = query; return release(e); };
        return client;
      };
    },
  });
}

export async function rebuild(id: string, o: RebuildOptions) {
  const p = await createPipeline(id, 7);
  try {
    await p.startCapture();
    const t0 = Date.now();
    log(`rebuild: writing ${o.customers} customers, 1000 products, ${o.orders} orders (${o.perTransaction}/tx)`);
    const seeded = await p.generator.send(`seed ${o.customers} 1000`);
    const placed = await p.generator.send(`backlog ${o.orders} ${o.perTransaction}`);
    const stats = placed.total;
    const expected = stats.customers + stats.products + stats.orders + stats.orderItems;
    log(`rebuild: source written in ${((Date.now() - t0) / 1000).toFixed(1)} s (${JSON.stringify(stats)}); waiting for the capture (${expected} messages)`);
    await waitDrained(p, { expectedMessages: expected, timeoutMs: 1_800_000 });
    const captureSeconds = (Date.now() - t0) / 1000;
    log(`rebuild: backlog in the topics after ${captureSeconds.toFixed(1)} s`);
    await p.stopCapture();
    const env = p.consumerEnv as NodeJS.ProcessEnv;
    const { an, meta } = quoted(p.schemas);
    const runs = [];
    for (let r = 0; r < o.runs; r++) {
     const order = r % 2 === 0 ? TREES : [...TREES].reverse();
     for (const [ti, t] of order.entries()) {
      const loadBefore = loadavg();
      const replay = await runReplay(env, p.group, t.dir, r === 0 && ti === 0 ? process.env.BENCH_PROFILE_DIR : undefined);
      const loadMid = loadavg();
      log(`rebuild run ${r + 1} (${t.tree}): replay ${replay.wallSeconds.toFixed(1)} s ${JSON.stringify(replay.phases)}`);
      const statements: { sql: string; ms: number }[] = [];
      const batch = await fullRefresh(timedPool(p.wh, statements), p.schemas, { redisKeyPrefix: p.keyPrefix });
      // not part of the timing: the batch queued every CLV row for Redis; nobody flushes it here
      await p.wh.query(`DELETE FROM ${meta}.redis_outbox WHERE key_prefix = $1`, [p.keyPrefix]);
      const { rows } = await p.wh.query(`SELECT (SELECT count(*) FROM ${an}.fact_orders)::int AS fact, (SELECT count(*) FROM ${an}.customer_lifetime_value)::int AS clv`);
      const run = {
        run: r + 1, tree: t.tree, loadavgBefore: loadBefore, loadavgMid: loadMid, loadavgAfter: loadavg(),
        replaySeconds: round(replay.wallSeconds, 2), replayInternalSeconds: replay.summary?.seconds, replayMessages: replay.summary?.messages,
        replayPhases: replay.phases,
        replayStagesMs: replay.stages,
        batchSeconds: round(batch.ms / 1000, 2), batchFactOrders: batch.factOrders, batchClvRows: batch.customers,
        ratio: round(replay.wallSeconds / (batch.ms / 1000), 2),
        rows: rows[0],
        batchStatementsMs: statements.filter((x) => x.ms >= 50).map((x) => ({ ms: x.ms, sql: x.sql })),
      };
      log(`rebuild run ${r + 1}: ${JSON.stringify(run)}`);
      runs.push(run);
      o.onRun?.(summary(runs));
     }
    }
    return summary(runs);
    function summary(rs: typeof runs) {
      return {
      size: { customers: stats.customers, products: stats.products, orders: stats.orders, orderItems: stats.orderItems, messages: expected, perTransaction: o.perTransaction },
      backlogSeconds: round(captureSeconds), seedSeconds: seeded.seconds,
      runs: rs,
      median: { replaySeconds: median(rs.map((r) => r.replaySeconds)), batchSeconds: median(rs.map((r) => r.batchSeconds)), ratio: median(rs.map((r) => r.ratio)) },
      medianByTree: Object.fromEntries(TREES.map(({ tree }) => {
        const x = rs.filter((r) => r.tree === tree);
        return [tree, { replaySeconds: median(x.map((r) => r.replaySeconds)), batchSeconds: median(x.map((r) => r.batchSeconds)), ratio: median(x.map((r) => r.ratio)) }];
      })),
      };
    }
  } finally {
    await p.cleanup();
  }
}
