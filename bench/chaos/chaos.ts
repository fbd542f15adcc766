import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import pg from 'pg';
import { createRegistry } from '../../src/consumer/avro.ts';
import { ensureTopic } from '../../consumers/clickstream/topic.ts';
import { TABLE_NAMES } from '../../src/consumer/tables.ts';
import { migrate } from '../../src/migrations/runner.ts';
import { createRedisClient } from '../../src/sinks/redis/redis-client.ts';
import { createWarehousePool, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { sleep } from '../../src/util/sleep.ts';
import { compareAll, firstOrderRecords, waitCatchUp, type FinalComparison } from './final.ts';
import { inject } from './faults.ts';
import { ClickLoad, ShopLoad } from './load.ts';
import { faultResources, laneFits, laneSchedules, laneStartDelayMs, ResourceGuard } from './lanes.ts';
import { checkSlotSamples, ProgressProbe, RecoveryLatch, SharedObserver, SlotSampler, type Baseline, type GroupSpec } from './probes.ts';
import { RedisClusterView } from './redis-cluster.ts';
import { FaultSchedule, fitsAnother, stackKinds, summarize, unfitKinds, type FaultKind, type FaultRecord, type PlannedFault } from './schedule.ts';
import { ThrowawayStack } from './stack.ts';
import { Supervised, type ProcessSpec } from './supervisor.ts';

/**
 * One chaos run (`npm run chaos`, docs/operations.md "Chaos runs"): its own
 * stack, the whole pipeline as supervised processes (capture, two warehouse
 * members, the clickstream consumer, the API, the registry) on one or
 * three Kafka brokers and a single Redis or a Redis Cluster, steady shop
 * and clickstream load, and seeded faults one after the other, each
 * measured until every process made progress again. Then the load stops,
 * everything catches up and is compared.
 */
export interface ChaosOptions {
  minutes: number;
  seed: number;
  maxFaults: number;
  /** Stop after this many faults of each kind (k full rounds of the schedule), if the time lasts. */
  faultsPerKind?: number;
  /** First of the ports the run takes (about 20 from here; with a Redis Cluster also +21..+26 and +121..+126). */
  portBase: number;
  /** A fault not recovered from after this long is a stall (reported, and the run fails). */
  stallBoundMs?: number;
  ordersPerSecond?: number;
  kinds?: readonly FaultKind[];
  /** Quiet time between a recovery and the next fault (default 3-12 s). */
  gapMs?: [number, number];
  /** No fault starts later than this before the end (default 60 s): time to see it recover. */
  reserveMs?: number;
  /** Kafka brokers of the throw-away stack (STACK_KAFKA_BROKERS; 1 unless the stack offers more). */
  brokers?: number;
  /** A six-node Redis Cluster (STACK_REDIS_CLUSTER=1) instead of one redis-server. */
  redisCluster?: boolean;
  /**
   * Every kind in a lane of its own, all lanes at once (bench/chaos/lanes.ts);
   * also starts the throw-away servers for fast restarts (FAST_RESTARTS).
   */
  lanes?: boolean;
  log?: (line: string) => void;
  /** Aborted (Ctrl-C): no further fault; the run stops its processes and its stack and reports what it had. */
  signal?: AbortSignal;
}

export interface ChaosReport {
  seed: number;
  minutes: number;
  startedAt: string;
  durationS: number;
  stack: { kafkaBrokers: number; redis: string; captureProducer: string; logs: string; keptState?: string };
  stallBoundMs: number;
  /** Faults in concurrent per-kind lanes (else one after the other), and the stack settings that came with them. */
  lanes: boolean;
  stackTuning: Record<string, string>;
  faults: FaultRecord[];
  summary: ReturnType<typeof summarize>;
  final: FinalComparison | null;
  slot: { samples: number; violations: number; firstViolations: Array<{ at: number; orderId: number; why: string }> };
  load: Record<string, number>;
  processes: Array<{ name: string; starts: number; unexpectedExits: Array<{ code: number | null; signal: string | null }> }>;
  machine: { loadavgStart: number[]; loadavgEnd: number[]; cpuSeconds: number };
  error?: string;
  ok: boolean;
}

const SCHEMAS: WarehouseSchemas = { staging: 'staging', analytics: 'analytics', meta: 'cdc_meta' };
const SLOT = 'shop_cdc';
const CLICK_TOPIC = 'clickstream.events';
const SESSION_MS = 6000;
/**
 * The throw-away stack of a lanes run, whose servers are killed every 20 s
 * or so: brokers on the C1 compiler and the serial GC (a JVM start in about
 * half the CPU), fenced by the controller after 6 s without a heartbeat
 * instead of 9, and Redis masters failed over after 2 s instead of 3
 * (scripts/stack.sh; the shared stack keeps its defaults).
 */
const FAST_RESTARTS = {
  STACK_KAFKA_JVM_OPTS: '-Xms128m -Xmx768m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC',
  STACK_KAFKA_EXTRA_PROPERTIES: 'broker.session.timeout.ms=6000 broker.heartbeat.interval.ms=1000',
  STACK_REDIS_CLUSTER_NODE_TIMEOUT: '2000',
};

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? ((l: string) => console.log(l));
  const stallBoundMs = o.stallBoundMs ?? 120_000;
  const brokers = o.brokers ?? Number(process.env.STACK_KAFKA_BROKERS ?? 1);
  const redisCluster = o.redisCluster ?? process.env.STACK_REDIS_CLUSTER === '1';
  const kinds = o.kinds ?? stackKinds({ redisCluster });
  const unfit = unfitKinds(kinds, { redisCluster });
  if (unfit) throw new RangeError(unfit);
  const maxFaults = Math.min(o.maxFaults, o.faultsPerKind ? o.faultsPerKind * kinds.length : Infinity);
  const b = o.portBase;
  const state = mkdtempSync(join(tmpdir(), 'chaos-stack-'));
  // Apart from the stack's state, which is removed at the end: the process logs stay for a look afterwards.
  const logs = mkdtempSync(join(tmpdir(), 'chaos-logs-'));
  // Brokers on b+2..b+7 (node k and its controller at b+2k, b+2k+1); cluster nodes from the Redis port + 1, so that Redis moves to b+20.
  const stack = new ThrowawayStack(state, { pg: b, redis: redisCluster ? b + 20 : b + 1, kafka: b + 2, kafkaController: b + 6, registry: b + 10 }, { brokers, redisCluster }, o.lanes ? FAST_RESTARTS : {});
  const u = stack.urls;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const load0 = loadavg();
  const report: ChaosReport = {
    seed: o.seed, minutes: o.minutes, startedAt: new Date(t0).toISOString(), durationS: 0,
    stack: { kafkaBrokers: brokers, redis: redisCluster ? 'Redis Cluster (3 masters, 3 replicas)' : 'single', captureProducer: process.env.CAPTURE_PRODUCER ?? 'kafkajs', logs }, stallBoundMs, lanes: o.lanes === true, stackTuning: o.lanes ? FAST_RESTARTS : {}, faults: [], summary: summarize([]), final: null,
    slot: { samples: 0, violations: 0, firstViolations: [] }, load: {}, processes: [], machine: { loadavgStart: load0, loadavgEnd: [], cpuSeconds: 0 }, ok: false,
  };
  const stops: Array<() => Promise<unknown>> = [];
  const procs = new Map<string, Supervised>();
  try {
    log(`chaos: seed ${o.seed}, ${o.minutes} min, at most ${maxFaults} faults (${kinds.join(', ')}); ${brokers} broker(s), ${redisCluster ? 'Redis Cluster' : 'single Redis'}; stack under ${state}`);
    // Registered before up(): a stack that came up halfway (a port taken, a broker that did not start) is stopped too.
    stops.push(() => stack.down(report.final?.ok === false));
    await stack.up();
    const source = new pg.Pool({ connectionString: u.source, max: 4 });
    const warehouse = createWarehousePool(u.warehouse, 4);
    // Idle clients report to the pool; a checked-out one (the load's transactions, the final
    // comparison) has no listener of the pool's, and a pg-restart would make its 'error' uncaught.
    // Its query rejects either way, which is where the suite sees it.
    for (const p of [source, warehouse]) {
      p.on('error', () => {});
      p.on('connect', (client) => client.on('error', () => {}));
    }
    stops.push(() => source.end(), () => warehouse.end());
    await migrate(source, 'source');
    await migrate(warehouse, 'warehouse');
    const kafka = new kafkajs.Kafka({ clientId: 'chaos', brokers: u.kafka.split(','), logLevel: kafkajs.logLevel.NOTHING, retry: { retries: 2 } });
    const admin = kafka.admin();
    await admin.connect();
    stops.push(() => admin.disconnect());
    const redis = createRedisClient({ redisUrl: u.redis, redisClusterNodes: u.redisClusterNodes }, { maxRetriesPerRequest: 1, lazyConnect: true });
    redis.on('error', () => {});
    stops.push(async () => redis.disconnect());

    const env: NodeJS.ProcessEnv = {
      ...process.env, ...stack.env, SOURCE_DATABASE_URL: u.source, WAREHOUSE_DATABASE_URL: u.warehouse, KAFKA_BROKERS: u.kafka,
      SCHEMA_REGISTRY_URL: u.registry, REDIS_URL: u.redis, TOPIC_PREFIX: 'shop', LOG_LEVEL: 'info',
      CAPTURE_TOPIC_PARTITIONS: '3', CAPTURE_METRICS_PORT: '-1', CONSUMER_HEALTH_PORT: '-1', CLICKSTREAM_HEALTH_PORT: '-1',
      CONSUMER_SESSION_TIMEOUT_MS: String(SESSION_MS), CLICKSTREAM_SESSION_TIMEOUT_MS: String(SESSION_MS), CONSUMER_MAX_MESSAGES_PER_TX: '200',
    };
    if (u.redisClusterNodes) env.REDIS_CLUSTER_NODES = u.redisClusterNodes.join(',');
    else delete env.REDIS_CLUSTER_NODES;
    for (const k of ['STAGING_SCHEMA', 'ANALYTICS_SCHEMA', 'META_SCHEMA', 'REDIS_KEY_PREFIX', 'SOURCE_SCHEMA', 'CONSUMER_GROUP', 'CAPTURE_SLOT']) delete env[k];
    const specs: ProcessSpec[] = [
      { name: 'registry', main: 'src/registry/main.ts', healthPort: b + 10, env: { ...env, REGISTRY_PORT: String(b + 10), REGISTRY_DATABASE_URL: u.registryDb } },
      { name: 'capture', main: 'src/cli/capture.ts', healthPort: b + 11, env: { ...env, CAPTURE_METRICS_PORT: String(b + 11), CAPTURE_HEARTBEAT_MS: '1000' } },
      { name: 'warehouse-1', main: 'consumers/warehouse/main.ts', healthPort: b + 12, env: { ...env, CONSUMER_HEALTH_PORT: String(b + 12) } },
      { name: 'warehouse-2', main: 'consumers/warehouse/main.ts', healthPort: b + 13, env: { ...env, CONSUMER_HEALTH_PORT: String(b + 13) } },
      { name: 'clickstream', main: 'consumers/clickstream/main.ts', healthPort: b + 14, env: { ...env, CLICKSTREAM_HEALTH_PORT: String(b + 14) } },
      { name: 'api', main: 'src/api/main.ts', healthPort: b + 15, env: { ...env, API_PORT: String(b + 15) } },
    ];
    for (const s of specs) procs.set(s.name, new Supervised(s, logs));
    const p = (name: string) => procs.get(name)!;
    // Stopped in reverse start order (clients before what they use).
    stops.push(async () => { for (const s of [...specs].reverse()) await p(s.name).stop(); });
    // The catalog before the capture starts (it arrives as snapshot reads); everything starts at once and
    // waits for what it needs (the registry, the topics) as after any restart.
    const shop = new ShopLoad(source, o.seed, o.ordersPerSecond ?? 6);
    await shop.seedCatalog(300, 60);
    for (const s of specs) p(s.name).start();
    await until('the registry', 120_000, async () => (await fetch(`${u.registry}/subjects`)).ok);
    await ensureTopic(admin, CLICK_TOPIC, 3);
    shop.start();
    stops.push(() => shop.stop());
    const topics = TABLE_NAMES.map((t) => `shop.public.${t}`);
    await until('the capture to create the topics', 120_000, async () => { const have = new Set(await admin.listTopics()); return topics.every((t) => have.has(t)); });
    const catalog = await clickCatalog(source);
    const clicks = new ClickLoad({ brokers: u.kafka.split(','), registry: createRegistry(u.registry), topic: CLICK_TOPIC, seed: o.seed, catalog, everyMs: 2000, visitors: 3 });
    await clicks.start();
    stops.push(() => clicks.stop());

    const groups: GroupSpec[] = [
      { group: 'warehouse', topics, members: [p('warehouse-1'), p('warehouse-2')] },
      { group: 'clickstream', topics: [CLICK_TOPIC], members: [p('clickstream')] },
    ];
    const sampler = new SlotSampler({ source, admin, slot: SLOT, ordersTopic: 'shop.public.orders', allTopics: [...topics, CLICK_TOPIC], everyMs: 2000 });
    let apiCustomer = 1;
    const probe = new ProgressProbe({ source, warehouse, admin, schemas: SCHEMAS, capture: p('capture'), groups, api: p('api'), registry: p('registry'), apiCustomerId: () => apiCustomer, lastHighs: () => sampler.lastHighs });
    // Warm-up: everything running and applying before the first fault.
    const warm = await probe.baseline();
    await until('the pipeline to make progress before the first fault', 180_000, async () => (await probe.pending(warm)).length === 0, () => probe.pending(warm).then((x) => x.join(', ')));
    apiCustomer = Number((await warehouse.query('SELECT customer_id FROM analytics.customer_lifetime_value ORDER BY customer_id LIMIT 1')).rows[0]?.customer_id ?? 1);
    sampler.start();
    stops.push(async () => sampler.stop());
    log(`chaos: pipeline up and applying after ${((Date.now() - t0) / 1000).toFixed(0)} s; faults start`);

    const scheduleOpts = {
      seed: o.seed, kinds, consumerTargets: ['warehouse-1', 'warehouse-2', 'clickstream'], zombieTargets: ['warehouse-1', 'warehouse-2'],
      minGapMs: o.gapMs?.[0] ?? (o.lanes ? 1000 : 3000), maxGapMs: o.gapMs?.[1] ?? (o.lanes ? 3000 : 12_000), sessionTimeoutMs: SESSION_MS,
    };
    const rcView = redisCluster ? new RedisClusterView(stack.redisNodePorts) : undefined;
    const observer = new SharedObserver(() => probe.observe());
    const active = new Set<number>();
    let injectedSoFar = 0;
    // Per kind, over the kind's lanes: checked and counted with no await between, so lanes of one kind never overshoot the bound.
    const kindSoFar = new Map<FaultKind, number>();
    // One fault: its baseline, the injection, then observations until every check passed once (or the stall bound).
    const runFault = async (next: PlannedFault, n: number, turn: number): Promise<void> => {
      injectedSoFar += 1;
      kindSoFar.set(next.kind, (kindSoFar.get(next.kind) ?? 0) + 1);
      let base = await steadyBaseline(probe, o.signal);
      const at = Date.now();
      const overlapping = active.size;
      active.add(n);
      try {
        const injected = await inject(next, { stack, admin, processes: procs, topics: [...topics, CLICK_TOPIC], backoffMs: 1000, n: turn, redisCluster: rcView, signal: o.signal, restartInBackground: o.lanes });
        // Awaited after the recovery: until then a failed restart must not count as unhandled.
        injected.back?.catch(() => undefined);
        // A zombie is measured from its SIGCONT: what it and the group do after it woke up.
        if (next.kind === 'zombie-consumer') base = await steadyBaseline(probe, o.signal);
        const latch = new RecoveryLatch(probe.checkNames());
        let pending: string[] = [];
        let lastPending: string[] = [];
        let recoveryMs: number | null = null;
        let seen = Date.now();
        while (Date.now() - injected.from < stallBoundMs && !o.signal?.aborted) {
          const obs = await observer.after(seen);
          seen = obs.at + 1;
          pending = latch.note(probe.pendingAt(base, obs));
          if (pending.length === 0) {
            recoveryMs = obs.at - injected.from;
            break;
          }
          lastPending = pending;
          await sleep(250);
        }
        // The fault holds its server until the node is back: the next fault of it starts from a whole cluster.
        const back = injected.back ? `; ${await injected.back}` : '';
        const rec: FaultRecord = { n, kind: next.kind, target: next.target, atS: Math.round((at - t0) / 100) / 10, recoveryMs, slowest: lastPending, detail: `${injected.detail}${back}` };
        if (o.lanes) rec.overlapping = overlapping;
        if (next.stopMs) rec.stopMs = next.stopMs;
        if (recoveryMs === null) rec.stalled = pending;
        report.faults.push(rec);
        log(`chaos: #${n} ${next.kind} ${next.target} at ${rec.atS} s: ${recoveryMs === null ? `STALLED (${pending.join(', ')})` : `recovered in ${(recoveryMs / 1000).toFixed(1)} s (last: ${lastPending.join(', ') || '-'})`}${o.lanes ? ` [${overlapping} other fault(s) under way]` : ''} — ${rec.detail}`);
      } finally {
        active.delete(n);
      }
    };
    const endAt = Date.now() + o.minutes * 60_000;
    const reserveMs = o.reserveMs ?? 60_000;
    if (o.lanes) {
      // Every kind in a lane of its own, all at once; a fault waits only for a fault on the same resource.
      const guard = new ResourceGuard();
      let numbered = 0;
      // A lane that fails (a takeover that never came) ends the others at their next fault, then the run fails with its error.
      let failed = false;
      const lanes = await Promise.allSettled(laneSchedules({ ...scheduleOpts, kinds }).map(async ({ kind, schedule }, lane) => {
        for (let turn = 1; !failed; turn++) {
          const next = schedule.next();
          if (turn === 1) next.gapMs += laneStartDelayMs(lane);
          if (o.signal?.aborted) throw new Error('interrupted');
          if (!laneFits({ now: Date.now(), endAt, kindSoFar: kindSoFar.get(kind) ?? 0, faultsPerKind: o.faultsPerKind, faultsSoFar: injectedSoFar, maxFaults, next, reserveMs })) break;
          await sleep(next.gapMs, o.signal);
          const release = await guard.acquire(faultResources(next));
          try {
            if (o.signal?.aborted) throw new Error('interrupted');
            // The wait for the resource may have used up the time left.
            if (failed || !laneFits({ now: Date.now(), endAt, kindSoFar: kindSoFar.get(kind) ?? 0, faultsPerKind: o.faultsPerKind, faultsSoFar: injectedSoFar, maxFaults, next: { ...next, gapMs: 0 }, reserveMs })) break;
            await runFault(next, ++numbered, turn);
          } catch (err) {
            failed = true;
            throw err;
          } finally {
            release();
          }
        }
      }));
      report.faults.sort((x, y) => x.n - y.n);
      const lost = lanes.find((l): l is PromiseRejectedResult => l.status === 'rejected');
      if (lost) throw lost.reason;
    } else {
      const schedule = new FaultSchedule(scheduleOpts);
      for (let n = 1; ; n++) {
        const next = schedule.next();
        if (o.signal?.aborted) throw new Error('interrupted');
        if (!fitsAnother({ now: Date.now(), endAt, faultsSoFar: report.faults.length, maxFaults, next, reserveMs })) break;
        await sleep(next.gapMs, o.signal);
        if (o.signal?.aborted) throw new Error('interrupted');
        await runFault(next, n, n);
      }
    }

    log('chaos: faults over; stopping the load and waiting for the pipeline to catch up');
    await shop.stop();
    await clicks.stop();
    sampler.stop();
    await redis.connect().catch(() => {});
    const caughtUpMs = await waitCatchUp({ source, warehouse, admin, schemas: SCHEMAS, slot: SLOT, groups, timeoutMs: 300_000 });
    report.final = await compareAll({ source, warehouse, redis, schemas: SCHEMAS, redisKeyPrefix: '', caughtUpMs });
    // Servers are stopped either way; after a failed comparison the data stays (`STACK_STATE=<dir> stack.sh up` brings it back).
    if (!report.final.ok) report.stack.keptState = state;
    const first = await firstOrderRecords({ brokers: u.kafka.split(','), admin, registryUrl: u.registry, topic: 'shop.public.orders' });
    const inSource = new Set((await source.query<{ id: string }>('SELECT order_id::text AS id FROM public.orders')).rows.map((r) => Number(r.id)));
    const violations = checkSlotSamples(sampler.samples, shop.orderLsns, first, inSource);
    report.slot = { samples: sampler.samples.length, violations: violations.length, firstViolations: violations.slice(0, 5) };
    report.load = { ...shop.stats, clickEventsSent: clicks.sent, clickSendFailures: clicks.sendFailures };
    const stalls = report.faults.filter((f) => f.recoveryMs === null).length;
    report.ok = report.final.ok && violations.length === 0 && stalls === 0 && report.faults.length > 0;
  } catch (err) {
    report.error = err instanceof Error ? err.stack ?? err.message : String(err);
    log(`chaos: run failed: ${report.error}`);
    for (const s of procs.values()) log(`--- ${s.name} (last lines) ---\n${s.tail(15)}`);
  } finally {
    report.processes = [...procs.values()].map((s) => ({ name: s.name, starts: s.starts, unexpectedExits: s.unexpectedExits().map((e) => ({ code: e.code, signal: e.signal })) }));
    for (const stop of stops.reverse()) await stop().catch((e) => log(`chaos: cleanup: ${String(e)}`));
    report.summary = summarize(report.faults);
    report.durationS = Math.round((Date.now() - t0) / 1000);
    const cpu = process.cpuUsage(cpu0);
    report.machine.loadavgEnd = loadavg();
    report.machine.cpuSeconds = Math.round((cpu.user + cpu.system) / 1e4) / 100;
  }
  return report;
}

/**
 * A baseline, read again while it fails: with lanes another lane's fault
 * (a Postgres restart) may be under way, and a fault's baseline must not
 * fail the run for it.
 */
async function steadyBaseline(probe: ProgressProbe, signal?: AbortSignal): Promise<Baseline> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      return await probe.baseline();
    } catch (err) {
      if (Date.now() > deadline || signal?.aborted) throw err;
      await sleep(500);
    }
  }
}

async function until(what: string, ms: number, ok: () => Promise<boolean>, why?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await ok().catch(() => false)) return;
    await sleep(500);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${why ? ` (${await why().catch(() => '?')})` : ''}`);
}

async function clickCatalog(source: pg.Pool) {
  const products = await source.query('SELECT product_id::int AS id, price::text AS price FROM public.products ORDER BY product_id');
  const customers = await source.query('SELECT customer_id::int AS id FROM public.customers ORDER BY customer_id');
  return { products: products.rows.map((r) => ({ productId: r.id as number, price: r.price as string })), customerIds: customers.rows.map((r) => r.id as number), orders: [] };
}
