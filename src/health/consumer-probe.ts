import type { Admin, Kafka } from 'kafkajs';
import type pg from 'pg';
import { errorMessage } from '../errors.ts';
import type { Service } from '../lifecycle/service.ts';
import type { Logger } from '../logger.ts';
import { readStoredOffsets } from '../sinks/postgres/consumer-progress.ts';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import type { WatchdogConfig } from './config.ts';
import type { ConsumerMetrics } from './consumer-metrics.ts';
import { readPartitionLag, totalLag } from './group-lag.ts';
import type { HealthState } from './health-state.ts';
import { ProgressWatchdog, WatchdogRunner, type StalledError, type WatchdogSample } from './watchdog.ts';

export interface ConsumerProbeOptions {
  kafka: Kafka;
  pool: pg.Pool;
  schemas: WarehouseSchemas;
  group: string;
  topics: readonly string[];
  /** The Redis key prefix whose outbox rows this group writes; undefined for a group without a Redis sink. */
  redisKeyPrefix?: string;
  metrics: ConsumerMetrics;
  health: HealthState;
  watchdog: WatchdogConfig;
  log: Logger;
  onExit: (err: StalledError) => void;
}

/**
 * The consumer side of the watchdog, as a Service: every interval it reads
 * the group's lag per partition (Postgres-stored offsets against Kafka high
 * watermarks), its dead-letter counts and its Redis outbox depth into the
 * metrics, and gives the watchdog work = lag > 0 and progress = the sum of
 * stored offsets. Measuring from Postgres, not from inside the consumer,
 * means a consumer hung anywhere (a lock, a dead fetch loop, a crashed
 * kafkajs runner) is seen the same way. Started before the consumer and
 * stopped after it, so a start-up that hangs with work waiting is caught too.
 */
export class ConsumerProbe implements Service {
  readonly name = 'consumer-probe';
  private admin: Admin | undefined;
  private connected = false;
  private runner: WatchdogRunner;

  constructor(private readonly o: ConsumerProbeOptions) {
    this.runner = new WatchdogRunner({
      watchdog: new ProgressWatchdog(o.watchdog), sample: () => this.sample(), intervalMs: o.watchdog.intervalMs,
      health: o.health, log: o.log, onExit: o.onExit,
    });
  }

  async start(): Promise<void> {
    this.admin = this.o.kafka.admin();
    this.runner.start();
  }

  /** One reading of lag, dead letters and outbox into the metrics; the watchdog's sample. */
  async sample(): Promise<WatchdogSample> {
    const { pool, schemas, group, metrics } = this.o;
    if (!this.connected) {
      await this.admin!.connect();
      this.connected = true;
    }
    const stored = await readStoredOffsets(pool, schemas, group);
    const parts = await readPartitionLag(this.admin!, stored, this.o.topics).catch((err: unknown) => {
      // A broken admin connection does not always reconnect on its own.
      this.connected = false;
      void this.admin!.disconnect().catch(() => {});
      throw err;
    });
    for (const p of parts) metrics.lag.set({ group, topic: p.topic, partition: String(p.partition) }, Number(p.lag));
    const { meta } = quoted(schemas);
    const dead = await pool.query<{ topic: string; n: string }>(`SELECT topic, count(*)::text AS n FROM ${meta}.dead_letters WHERE consumer_group = $1 GROUP BY topic`, [group]);
    for (const r of dead.rows) metrics.deadLetters.set({ group, topic: r.topic }, Number(r.n));
    if (this.o.redisKeyPrefix !== undefined) {
      const ob = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${meta}.redis_outbox WHERE key_prefix = $1`, [this.o.redisKeyPrefix]);
      metrics.outboxDepth.set({ group }, Number(ob.rows[0]!.n));
    }
    const lag = totalLag(parts);
    let progress = 0n;
    for (const v of stored.values()) progress += BigInt(v);
    return { work: lag > 0n, progress, detail: `lag ${lag}` };
  }

  async stop(): Promise<void> {
    this.runner.stop();
    if (this.admin && this.connected) await this.admin.disconnect().catch((err) => this.o.log.debug({ err: errorMessage(err) }, 'probe admin disconnect'));
    this.connected = false;
  }
}
