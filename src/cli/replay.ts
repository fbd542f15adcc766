import { Command, InvalidArgumentError, Option } from 'commander';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import { createRegistry } from '../consumer/avro.ts';
import { loadWarehouseConsumerConfig } from '../consumer/config.ts';
import { kafkaLogCreator } from '../consumer/kafka-log.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { replayWarehouse } from '../rebuild/replay.ts';
import type { ReplayFrom } from '../rebuild/start-offsets.ts';
import { createWarehousePool } from '../sinks/postgres/pool.ts';
import { Progress } from '../util/progress.ts';

/**
 * `npm run replay -- --group G (--from-offset earliest|N | --from-timestamp T) [--keep-old]`:
 * rebuilds the warehouse group's tables from the topics into fresh schemas
 * and swaps them in atomically once they cover the live group, which may
 * keep running (docs/operations.md, "Replay and rebuild"). Same env as the
 * warehouse consumer (schemas, topics, REDIS_KEY_PREFIX, CLV thresholds).
 */
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function ident(v: string): string {
  if (!IDENT.test(v)) throw new InvalidArgumentError('must be a lowercase identifier ([a-z_][a-z0-9_]*)');
  return v;
}

function fromOffset(v: string): ReplayFrom {
  if (v === 'earliest') return { kind: 'earliest' };
  if (!/^\d{1,19}$/.test(v)) throw new InvalidArgumentError('must be "earliest" or a non-negative integer offset');
  return { kind: 'offset', offset: BigInt(v) };
}

function fromTimestamp(v: string): ReplayFrom {
  const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError('must be an ISO-8601 instant (2024-05-01T00:00:00Z) or epoch milliseconds');
  return { kind: 'timestamp', ms };
}

export interface ReplayCliOptions {
  group?: string;
  fromOffset?: ReplayFrom;
  fromTimestamp?: ReplayFrom;
  keepOld?: boolean;
  allowPartial?: boolean;
  staging?: string;
  analytics?: string;
  json?: boolean;
  perKey?: boolean;
}

/** The `replay` command's flags; `shopstream replay` and this file's own entry both parse with it. */
export function replayCommand(): Command {
  return new Command('replay')
    .description('Rebuild the warehouse tables from the topics into fresh schemas and swap them in atomically')
    .option('--group <group>', 'the live consumer group (default CONSUMER_GROUP or warehouse)')
    .addOption(new Option('--from-offset <earliest|N>', 'start at the log start or at offset N of every partition').argParser(fromOffset).conflicts('fromTimestamp'))
    .addOption(new Option('--from-timestamp <T>', 'start at the first message at or after T (ISO-8601 or epoch ms)').argParser(fromTimestamp))
    .option('--keep-old', 'keep the replaced tables in <schema>__old_<stamp> instead of dropping them')
    .option('--per-key', 'recompute derived rows key by key during the whole replay (default: staging first, one set-based refresh, then per key)')
    .option('--allow-partial', 'swap in even when the start is after the log start (the tables then lack older changes)')
    .option('--staging <schema>', 'live staging schema (default STAGING_SCHEMA)', ident)
    .option('--analytics <schema>', 'live analytics schema (default ANALYTICS_SCHEMA)', ident)
    .option('--json', 'print the result as one JSON line on stdout (after the log lines)');
}

export async function runReplay(opts: ReplayCliOptions, program: Command): Promise<void> {
  const from = opts.fromOffset ?? opts.fromTimestamp;
  if (!from) return program.error('one of --from-offset or --from-timestamp is required');

  const cfg = loadWarehouseConsumerConfig();
  const log = createLogger('replay');
  const group = opts.group ?? cfg.group;
  const live = { staging: opts.staging ?? cfg.schemas.staging, analytics: opts.analytics ?? cfg.schemas.analytics, meta: cfg.schemas.meta };
  const pool = createWarehousePool(cfg.stack.warehouseUrl, 6);
  const redis = new Redis(cfg.stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis'));
  const kafka = new kafkajs.Kafka({ clientId: `replay-${group}`, brokers: cfg.stack.kafkaBrokers, logCreator: kafkaLogCreator(log) });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  process.once('SIGTERM', () => controller.abort());

  let progress: Progress | undefined;
  let phase = '';
  try {
    const result = await replayWarehouse({
      pool, kafka, registry: createRegistry(cfg.stack.registryUrl), redis, live, group, topics: cfg.topics,
      redisKeyPrefix: cfg.redisKeyPrefix, thresholds: cfg.thresholds, from, keepOld: opts.keepOld, allowPartial: opts.allowPartial, deferDerived: !opts.perKey,
      maxMessagesPerTx: cfg.maxMessagesPerTx, partitionsConcurrently: cfg.partitionsConcurrently, log, signal: controller.signal,
      onProgress: (p) => {
        if (p.phase !== phase) {
          progress?.finish(p.phase === 'handover' ? 'caught up with the end offsets' : 'done');
          phase = p.phase;
          progress = new Progress({ label: p.phase === 'replay' ? 'replay' : 'catching up with the live group', unit: 'messages', total: p.total, log });
        }
        progress!.update(p.done, p.total);
      },
    });
    progress?.finish('swapped in');
    const summary = { group, rebuildGroup: result.rebuildGroup, messages: result.messages, seconds: result.durationMs / 1000, ...result.swap, kept: result.kept };
    if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`); // one line: log lines share stdout
    else process.stdout.write(`replay of ${group}: ${result.messages} messages in ${summary.seconds.toFixed(1)} s, swapped in; ` +
      `${result.swap.clvChanged} CLV figures changed, ${result.swap.clvRemoved} removed${result.kept ? `; old tables kept in ${result.kept.staging}, ${result.kept.analytics}` : ''}\n`);
  } finally {
    redis.disconnect();
    await pool.end();
  }
}

async function main(): Promise<void> {
  const program = replayCommand().parse();
  await runReplay(program.opts<ReplayCliOptions>(), program);
}

if (isMain(import.meta.url)) main().catch((err) => exitOnStartupError('replay', err));
