import pg from 'pg';

/**
 * Steady writer for the latency benchmark, in its own process so it does not
 * share an event loop with the capture it measures. Args: url schema rate seconds firstOrderId.
 * Each transaction: 10 orders x (1 + 9 items) = 100 changes.
 */
const [url, schema, rateArg, secondsArg, firstArg] = process.argv.slice(2) as [string, string, string, string, string];
const rate = Number(rateArg);
const client = new pg.Client({ connectionString: url });
await client.connect();
let orderId = Number(firstArg);
const intervalMs = (100 / rate) * 1000;
const t0 = Date.now();
let next = t0;
let written = 0;
/** Round trip of each transaction's statement (auto-commit: includes the commit's WAL flush), to tell a slow source from a slow capture. */
const queryMs: number[] = [];
while (Date.now() - t0 < Number(secondsArg) * 1000) {
  const lo = orderId + 1;
  orderId += 10;
  const q0 = performance.now();
  await client.query(`WITH o AS (INSERT INTO ${schema}.orders (order_id, customer_id, order_date, status)
      SELECT g, 1 + g % 100, now(), 'placed' FROM generate_series(${lo}, ${orderId}) g RETURNING order_id)
    INSERT INTO ${schema}.order_items (order_id, product_id, quantity, unit_price, discount)
      SELECT o.order_id, k, 1, 9.99, 0 FROM o, generate_series(1, 9) k`);
  queryMs.push(performance.now() - q0);
  written += 100;
  next += intervalMs;
  const wait = next - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
queryMs.sort((a, b) => a - b);
const q = (p: number) => Math.round(queryMs[Math.min(queryMs.length - 1, Math.floor(p * queryMs.length))]! * 10) / 10;
process.stdout.write(JSON.stringify({ written, seconds: (Date.now() - t0) / 1000, lastOrderId: orderId, commitRoundTrip: { p50Ms: q(0.5), p99Ms: q(0.99), maxMs: q(1) } }));
await client.end();
