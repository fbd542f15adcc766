import pg from 'pg';
import { Redis } from 'ioredis';
import { loadStackConfig } from '../../src/config/index.ts';
import { redisClientOptions } from '../../src/config/redis.ts';
import { sleep } from '../../src/util/sleep.ts';
import { consumerProfileArgs, createPipeline, loadavg, log, median, pct, round, waitDrained, type Pipeline } from './pipeline.ts';

/**
 * Freshness, measured from outside the pipeline: while the demo generator
 * writes ORDERS_PER_SECOND orders (each its own transaction, plus status,
 * segment, price changes), a probe inserts one order with one line for a
 * dedicated probe customer every PROBE_MS on its own connection, autocommit.
 * t0 = the instant the INSERT's COMMIT returned to the probe; t1 = the
 * instant a Redis keyspace notification (hset on that customer's hash)
 * arrived whose hash shows the probe's order count. Latency = t1 - t0.
 * Probe customers (ids from 1e9) are not known to the generator, so only
 * probes change their CLV.
 */
export interface FreshnessOptions {
  ordersPerSecond: number;
  runs: number;
  warmupSeconds: number;
  probes: number;
  probeMs: number;
  catalogCustomers: number;
  generators: number;
}

const PROBE_CUSTOMERS = 1000;
const PROBE_BASE = 1_000_000_000;

export async function freshness(id: string, o: FreshnessOptions) {
  const p = await createPipeline(id);
  const stack = loadStackConfig();
  const sub = new Redis(stack.redisUrl, redisClientOptions(stack.redis));
  const reader = new Redis(stack.redisUrl, redisClientOptions(stack.redis));
  const probePg = new pg.Client({ connectionString: stack.sourceUrl });
  const [, oldNotify] = (await p.redis.config('GET', 'notify-keyspace-events')) as [string, string];
  try {
    await p.startCapture();
    log(`freshness: seeding ${o.catalogCustomers} customers, 1000 products`);
    await p.generator.send(`seed ${o.catalogCustomers} 1000`);
    // a first order creates the order topics, so the consumer finds all four
    await p.generator.send('backlog 10 1');
    await p.generator.send(`parallel ${o.generators}`);
    await probePg.connect();
    await probePg.query(`INSERT INTO ${id}.customers (customer_id, email, first_name, last_name, customer_segment)
      SELECT ${PROBE_BASE} + g, 'probe' || g || '@bench.test', 'Probe', 'P' || g, 'bronze' FROM generate_series(1, ${PROBE_CUSTOMERS}) g`);
    await p.startConsumer({}, consumerProfileArgs());
    await waitDrained(p, { group: true, timeoutMs: 300_000 });
    log('freshness: catalog applied, consumer caught up');

    // Keyspace notifications for hashes (h) and generic commands (g), only while we run; restored in finally.
    await p.redis.config('SET', 'notify-keyspace-events', `${oldNotify}Kgh`);
    const channelPrefix = `__keyspace@0__:${p.keyPrefix}clv:`;
    // per probe customer, its probes not yet seen, oldest first
    const pending = new Map<number, { expected: number; t0: number }[]>();
    let current: number[] = [];
    sub.on('pmessage', (_pat: string, channel: string, event: string) => {
      if (event !== 'hset') return;
      const seen = performance.now();
      const cid = Number(channel.slice(channelPrefix.length));
      if (!pending.get(cid)?.length) return;
      void reader.hget(`${p.keyPrefix}clv:${cid}`, 'total_orders').then((v) => {
        const list = pending.get(cid);
        while (list?.length && Number(v) >= list[0]!.expected) current.push(seen - list.shift()!.t0);
      });
    });
    await sub.psubscribe(`${channelPrefix}*`);

    const counts = new Map<number, number>();
    let orderId = 2_000_000_000;
    let seq = 0;
    const commitRtt: number[] = [];
    const probe = async () => {
      const cid = PROBE_BASE + 1 + (seq % PROBE_CUSTOMERS);
      const expected = (counts.get(cid) ?? 0) + 1;
      orderId += 1;
      const s = performance.now();
      await probePg.query(`WITH o AS (INSERT INTO ${id}.orders (order_id, customer_id, order_date, status) VALUES ($1, $2, now(), 'placed'))
        INSERT INTO ${id}.order_items (order_id, product_id, quantity, unit_price, discount) VALUES ($1, 1, 1, 10.00, 0)`, [orderId, cid]);
      const t0 = performance.now();
      commitRtt.push(t0 - s);
      counts.set(cid, expected);
      seq++;
      const list = pending.get(cid) ?? [];
      list.push({ expected, t0 });
      pending.set(cid, list);
    };

    const runs = [];
    for (let r = 0; r < o.runs; r++) {
      const loadBefore = loadavg();
      const gen = p.generator.send(`run ${o.ordersPerSecond} ${o.warmupSeconds + (o.probes * o.probeMs) / 1000 + 5}`);
      const lagSamples: { t: number; captureLagBytes: number; consumerLag: number }[] = [];
      let sampling = true;
      const sampler = (async () => {
        const t = Date.now();
        while (sampling) {
          lagSamples.push({ t: Date.now() - t, captureLagBytes: await p.captureLagBytes(), consumerLag: await p.consumerLag() });
          await sleep(1000);
        }
      })();
      // warm-up probes: same traffic, not recorded
      current = [];
      const warmEnd = Date.now() + o.warmupSeconds * 1000;
      while (Date.now() < warmEnd) { await probe(); await sleep(o.probeMs); }
      await sleep(2000);
      current = [];
      pending.clear();
      commitRtt.length = 0;
      let next = performance.now();
      for (let i = 0; i < o.probes; i++) {
        await probe();
        next += o.probeMs;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const genStats = await gen;
      // give the last probes up to 30 s
      const open = () => [...pending.values()].reduce((n, l) => n + l.length, 0);
      for (let i = 0; i < 300 && open() > 0; i++) await sleep(100);
      const lost = open();
      pending.clear();
      sampling = false;
      await sampler;
      const drainMs = await waitDrained(p, { group: true, timeoutMs: 600_000 });
      const lat = current.slice();
      const run = {
        run: r + 1,
        loadavgBefore: loadBefore,
        loadavgAfter: loadavg(),
        probes: lat.length,
        lostProbes: lost,
        p50Ms: round(pct(lat, 50)), p90Ms: round(pct(lat, 90)), p99Ms: round(pct(lat, 99)), maxMs: round(Math.max(...lat)),
        probeCommitRttMedianMs: round(median(commitRtt), 2),
        generator: { seconds: genStats.seconds, orders: genStats.delta.orders, orderItems: genStats.delta.orderItems, statusChanges: genStats.delta.statusChanges, ordersPerSecond: round(genStats.delta.orders / genStats.seconds) },
        lag: {
          captureLagBytesMedian: median(lagSamples.map((s) => s.captureLagBytes)), captureLagBytesMax: Math.max(...lagSamples.map((s) => s.captureLagBytes)),
          consumerLagMedian: median(lagSamples.map((s) => s.consumerLag)), consumerLagMax: Math.max(...lagSamples.map((s) => s.consumerLag)),
          consumerLagLast: lagSamples.at(-1)?.consumerLag, drainAfterStopMs: drainMs,
        },
      };
      log(`freshness run ${r + 1}: ${JSON.stringify(run)}`);
      runs.push(run);
    }
    return {
      ordersPerSecondTarget: o.ordersPerSecond, probeEveryMs: o.probeMs, probesPerRun: o.probes, warmupSeconds: o.warmupSeconds, catalogCustomers: o.catalogCustomers, generatorInstances: o.generators,
      method: 'probe order for a dedicated customer every probeEveryMs amid the generator load; t0 = INSERT (autocommit) returned, t1 = Redis keyspace notification (hset) of the customer hash showing the new total_orders',
      runs,
      median: { p50Ms: median(runs.map((r) => r.p50Ms)), p99Ms: median(runs.map((r) => r.p99Ms)), maxMs: median(runs.map((r) => r.maxMs)), ordersPerSecond: median(runs.map((r) => r.generator.ordersPerSecond)) },
    };
  } finally {
    await p.redis.config('SET', 'notify-keyspace-events', oldNotify).catch(() => {});
    sub.disconnect();
    reader.disconnect();
    await probePg.end().catch(() => {});
    await p.cleanup();
  }
}

export type { Pipeline };
