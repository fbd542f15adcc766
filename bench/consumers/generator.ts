import { createInterface } from 'node:readline';
import pg from 'pg';
import { TrafficGenerator, type GeneratorStats } from '../../src/generator/writer.ts';

/**
 * The demo traffic generator in a process of its own, so it shares no event
 * loop with the observer. Args: url schema seed. Commands on stdin, one JSON
 * line of result on stdout per command:
 *   seed <customers> <products>            catalog (generator 0)
 *   backlog <orders> <perTransaction>      placeOrders (generator 0)
 *   parallel <n>                           n generators for `run` (see below)
 *   run <ordersPerSecond> <seconds>        steady traffic (orders + side effects), split over the generators
 *
 * One TrafficGenerator issues one round trip per order and per side effect,
 * one after the other: on the loaded 2-core machine that tops out at ~150
 * orders/s. `parallel` runs n of them concurrently, each on its own
 * connection. TrafficGenerator takes its next ids from max(id) + 1 at
 * resume(), so generator k resumes after a placeholder order and customer
 * with id k * 1e8 (removed afterwards): disjoint id ranges.
 */
const [url, schema, seed] = process.argv.slice(2) as [string, string, string];
// The load's own commits need not wait for the WAL flush (the walsender
// still only decodes flushed WAL): 8 connections each waiting for their
// flush in turn topped out near 550-800 orders/s here. The freshness probe
// commits synchronously on its own connection, and its commit flushes
// everything before it.
const newPool = () => new pg.Pool({ connectionString: url, max: 1, options: '-c synchronous_commit=off' });
const pools: pg.Pool[] = [newPool()];
const gens: TrafficGenerator[] = [new TrafficGenerator(pools[0]!, { schema, seed: Number(seed) })];
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const total = (): GeneratorStats => {
  const t = { customers: 0, products: 0, orders: 0, orderItems: 0, statusChanges: 0, segmentChanges: 0, deletes: 0 };
  for (const g of gens) for (const k of Object.keys(t) as (keyof GeneratorStats)[]) t[k] += g.stats[k];
  return t;
};

async function parallel(n: number): Promise<void> {
  const q = (t: string) => `"${schema}".${t}`;
  const p0 = pools[0]!;
  for (let k = gens.length; k < n; k++) {
    const base = k * 100_000_000;
    await p0.query(`INSERT INTO ${q('customers')} (customer_id, email, first_name, last_name, customer_segment) VALUES ($1::bigint, 'gen' || $1::text || '@bench.test', 'Gen', 'G', 'bronze')`, [base]);
    await p0.query(`INSERT INTO ${q('orders')} (order_id, customer_id, order_date, status) VALUES ($1::bigint, $1::bigint, now(), 'delivered')`, [base]);
    const pool = newPool();
    const g = new TrafficGenerator(pool, { schema, seed: Number(seed) + k });
    await g.resume();
    pools.push(pool);
    gens.push(g);
  }
  await p0.query(`DELETE FROM ${q('orders')} WHERE order_id >= 100000000 AND order_id % 100000000 = 0`);
}

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, a, b] = line.trim().split(/\s+/);
  const t0 = Date.now();
  const before = total();
  if (cmd === 'seed') await gens[0]!.seedCatalog(Number(a), Number(b));
  else if (cmd === 'backlog') await gens[0]!.placeOrders(Number(a), Number(b));
  else if (cmd === 'parallel') await parallel(Number(a));
  else if (cmd === 'run') await Promise.all(gens.map((g) => g.run({ ordersPerSecond: Number(a) / gens.length, durationMs: Number(b) * 1000 })));
  else if (cmd === 'quit') break;
  else { out({ error: `unknown command ${line}` }); continue; }
  const seconds = (Date.now() - t0) / 1000;
  const now = total();
  const delta = Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - before[k as keyof GeneratorStats]]));
  out({ cmd, seconds, delta, total: now });
}
for (const p of pools) await p.end();
