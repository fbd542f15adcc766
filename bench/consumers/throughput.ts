import { loadStackConfig } from '../../src/config/index.ts';
import { sleep } from '../../src/util/sleep.ts';
import { CpuMeter, per10k } from './cpu.ts';
import { consumerProfileArgs, createPipeline, loadavg, log, median, round, waitDrained, type Pipeline } from './pipeline.ts';

/**
 * Live-mode throughput: how many messages per second the warehouse consumer
 * applies with every derived table maintained per batch (not the replay's
 * deferred mode). Freshness under a given load is queueing once the load
 * passes this figure, so it is the ceiling the freshness benchmark runs into.
 *
 * Per run: the generator's steady traffic (orders, status, segment, price
 * changes, as in the freshness benchmark) is written for `seconds` as fast
 * as the generators go, with the capture on and the consumer off; once the
 * capture has published it, the consumer is started and timed until its lag
 * is 0. The consumer's own stage timings go to BENCH_CHILD_LOG.consumer
 * when that is set.
 *
 * Cost: from the first batch the consumer commits (its lag falls below the
 * backlog) to lag 0, the CPU seconds of the consumer process and of its
 * Postgres backends (cpu.ts) per 10,000 messages applied in that window,
 * and the drain rate of that window (start-up and group join excluded).
 */
export interface ThroughputOptions {
  runs: number;
  seconds: number;
  rate: number;
  catalogCustomers: number;
  generators: number;
}

export async function throughput(id: string, o: ThroughputOptions) {
  const p = await createPipeline(id);
  try {
    await p.startCapture();
    await p.generator.send(`seed ${o.catalogCustomers} 1000`);
    await p.generator.send('backlog 10 1');
    await p.generator.send(`parallel ${o.generators}`);
    await p.startConsumer({}, consumerProfileArgs());
    await waitDrained(p, { group: true, timeoutMs: 300_000 });
    await p.stopConsumer();
    log('throughput: catalog applied');
    const runs = [];
    for (let r = 0; r < o.runs; r++) {
      const before = await p.topicMessages();
      const gen = await p.generator.send(`run ${o.rate} ${o.seconds}`);
      await waitDrained(p, { timeoutMs: 300_000 });
      const messages = (await p.topicMessages()) - before;
      const loadBefore = loadavg();
      const t0 = Date.now();
      await p.startConsumer({}, consumerProfileArgs());
      const cost = await measureDrain(p, messages, 1_800_000);
      const seconds = (Date.now() - t0) / 1000;
      await p.stopConsumer();
      const run = {
        run: r + 1, loadavgBefore: loadBefore, loadavgAfter: loadavg(),
        generator: { seconds: gen.seconds, orders: gen.delta.orders, ordersPerSecond: round(gen.delta.orders / gen.seconds) },
        messages, drainSeconds: seconds,
        messagesPerSecond: round(messages / seconds), ordersPerSecond: round(gen.delta.orders / seconds),
        window: cost,
      };
      log(`throughput run ${r + 1}: ${JSON.stringify(run)}`);
      runs.push(run);
    }
    return {
      method: 'generator traffic written with the consumer stopped, then the consumer (live mode, derived tables per batch) timed from spawn to lag 0, group join included',
      seconds: o.seconds, generatorInstances: o.generators, catalogCustomers: o.catalogCustomers,
      runs,
      median: {
        messagesPerSecond: median(runs.map((r) => r.messagesPerSecond)), ordersPerSecond: median(runs.map((r) => r.ordersPerSecond)), generatorOrdersPerSecond: median(runs.map((r) => r.generator.ordersPerSecond)),
        windowMessagesPerSecond: median(runs.map((r) => r.window.messagesPerSecond)),
        consumerCpuSecondsPer10k: median(runs.map((r) => r.window.consumerCpuSecondsPer10k)),
        postgresCpuSecondsPer10k: median(runs.map((r) => r.window.postgresCpuSecondsPer10k)),
        totalCpuSecondsPer10k: median(runs.map((r) => r.window.totalCpuSecondsPer10k)),
      },
    };
  } finally {
    await p.cleanup();
  }
}

/** Waits for lag 0, sampling the consumer's and its backends' CPU from its first committed batch on. */
async function measureDrain(p: Pipeline, backlog: number, timeoutMs: number) {
  const t0 = Date.now();
  const pgPort = Number(new URL(loadStackConfig().warehouseUrl).port || 5432);
  let meter: CpuMeter | undefined;
  let startLag = 0;
  let started = 0;
  for (;;) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`not drained after ${timeoutMs} ms`);
    const lag = await p.consumerLag().catch(() => backlog);
    if (!meter && lag < backlog) {
      meter = new CpuMeter(p.consumerPid()!, p.wh, pgPort);
      startLag = lag;
      started = Date.now();
    }
    await meter?.sample();
    if (lag === 0) break;
    await sleep(250);
  }
  const r = meter!.reading();
  const seconds = (Date.now() - started) / 1000;
  return {
    messages: startLag, seconds: round(seconds, 2), messagesPerSecond: round(startLag / Math.max(seconds, 0.001)),
    consumerCpuSeconds: round(r.consumerS, 2), postgresCpuSeconds: round(r.postgresS, 2), postgresBackends: r.backends,
    consumerCpuSecondsPer10k: per10k(r.consumerS, startLag), postgresCpuSecondsPer10k: per10k(r.postgresS, startLag),
    totalCpuSecondsPer10k: per10k(r.consumerS + r.postgresS, startLag),
  };
}
