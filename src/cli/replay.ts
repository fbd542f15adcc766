import { Command, InvalidArgumentError, Option } from 'commander';
import kafkajs from 'kafkajs';
import { kafkaClientConfig } from '../config/kafka.ts';
import { createRedisClient } from '../sinks/redis/redis-client.ts';
import { createRegistry } from '../consumer/avro.ts';
import { loadWarehouseConsumerConfig } from '../../consumers/warehouse/config.ts';
import { kafkaLogCreator } from '../consumer/kafka-log.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { clickstreamLockKey } from '../../consumers/clickstream/apply.ts';
import { loadClickstreamConfig } from '../../consumers/clickstream/config.ts';
import { replayWarehouse } from '../rebuild/replay.ts';
import { rewindGroup, type RewindTo } from '../rebuild/rewind.ts';
import { namespaceLockSql } from '../sinks/postgres/batch-tx.ts';
import type { ReplayFrom } from '../rebuild/start-offsets.ts';
import { createWarehousePool } from '../sinks/postgres/pool.ts';
import { CliProgress } from './progress.ts';

/**
 * Two commands (docs/operations.md, "Replay, rewind and rebuild"), with the
 * warehouse consumer's env (schemas, topics, REDIS_KEY_PREFIX, CLV thresholds):
 *
 * - `npm run replay -- --group G --rewind (--to-datetime T | --to-offset earliest|N) [--dry-run]`:
 *   moves the group's Postgres-stored offsets back, so it re-applies every
 *   change since then onto the live tables (running or stopped group);
 * - `npm run replay -- --group G --from-offset earliest [--keep-old]`:
 *   rebuilds the warehouse tables from the topics into fresh schemas and
 *   swaps them in atomically once they cover the live group, which may keep
 *   running. A rebuild that would not start at the first retained offset of
 *   every partition is refused: its tables would lack what came before.
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
  rewind?: boolean;
  toDatetime?: ReplayFrom;
  toOffset?: ReplayFrom;
  dryRun?: boolean;
  keepOld?: boolean;
  allowPartial?: boolean;
  staging?: string;
  analytics?: string;
  json?: boolean;
  perKey?: boolean;
  trustTopics?: boolean;
}

/** The `replay` command's flags; `shopstream replay` and this file's own entry both parse with it. */
export function replayCommand(): Command {
  return new Command('replay')
    .description('Rewind a consumer group onto the live tables, or rebuild the warehouse tables from the topics into fresh schemas and swap them in')
    .option('--group <group>', 'the live consumer group (default CONSUMER_GROUP or warehouse; CLICKSTREAM_GROUP for --rewind of the clickstream group)')
    .option('--rewind', 'move the group\'s stored offsets back (--to-datetime or --to-offset): it re-applies every change since then onto the live tables')
    .addOption(new Option('--to-datetime <T>', 'rewind to the first message at or after T (ISO-8601 or epoch ms)').argParser(fromTimestamp).conflicts('toOffset'))
    .addOption(new Option('--to-offset <earliest|N>', 'rewind to the log start or to offset N of every partition').argParser(fromOffset))
    .option('--dry-run', 'with --rewind: print what would move, move nothing')
    .addOption(new Option('--from-offset <earliest|N>', 'rebuild from the log start (or offset N, refused unless it is the log start)').argParser(fromOffset).conflicts(['fromTimestamp', 'rewind']))
    .addOption(new Option('--from-timestamp <T>', 'rebuild from T: only accepted when T is before every retained message (else use --rewind --to-datetime T)').argParser(fromTimestamp).conflicts('rewind'))
    .option('--keep-old', 'keep the replaced tables in <schema>__old_<stamp> instead of dropping them')
    .option('--per-key', 'recompute derived rows key by key during the whole replay (default: staging first, one set-based refresh, then per key)')
    .option('--trust-topics', 'swap in even when a topic\'s log start has moved and the rebuild lacks rows the live staging holds (live tables known to hold rows the source no longer has)')
    .addOption(new Option('--allow-partial').hideHelp())
    .option('--staging <schema>', 'live staging schema (default STAGING_SCHEMA)', ident)
    .option('--analytics <schema>', 'live analytics schema (default ANALYTICS_SCHEMA)', ident)
    .option('--json', 'print the result as one JSON line on stdout (after the log lines)');
}

export async function runReplay(opts: ReplayCliOptions, program: Command): Promise<void> {
  if (opts.allowPartial) {
    return program.error('--allow-partial was removed: a rebuild that starts after the log start would swap in tables lacking older rows. ' +
      'To re-apply the changes since a time onto the live tables use --rewind --to-datetime T; to rebuild use --from-offset earliest');
  }
  const cfg = loadWarehouseConsumerConfig();
  const log = createLogger('replay');
  const group = opts.group ?? cfg.group;
  if (opts.rewind) return rewind(opts, cfg, group, log, program);
  if (opts.toDatetime || opts.toOffset || opts.dryRun) return program.error('--to-datetime, --to-offset and --dry-run go with --rewind');
  const from = opts.fromOffset ?? opts.fromTimestamp;
  if (!from) return program.error('one of --rewind, --from-offset or --from-timestamp is required');

  const live = { staging: opts.staging ?? cfg.schemas.staging, analytics: opts.analytics ?? cfg.schemas.analytics, meta: cfg.schemas.meta };
  const pool = createWarehousePool(cfg.stack.warehouseUrl, 6);
  const redis = createRedisClient(cfg.stack, { maxRetriesPerRequest: 1 });
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis'));
  const kafka = new kafkajs.Kafka(kafkaClientConfig(cfg.stack.kafka, { clientId: `replay-${group}`, logCreator: kafkaLogCreator(log) }));
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  process.once('SIGTERM', () => controller.abort());

  let progress: CliProgress | undefined;
  let phase = '';
  try {
    const result = await replayWarehouse({
      pool, kafka, registry: createRegistry(cfg.stack.registry), redis, live, group, topics: cfg.topics,
      redisKeyPrefix: cfg.redisKeyPrefix, thresholds: cfg.thresholds, from, keepOld: opts.keepOld, deferDerived: !opts.perKey, trustTopics: opts.trustTopics,
      maxMessagesPerTx: cfg.maxMessagesPerTx, partitionsConcurrently: cfg.partitionsConcurrently, inputFormats: cfg.inputFormats, log, signal: controller.signal,
      onProgress: (p) => {
        if (p.phase !== phase) {
          progress?.finish(p.phase === 'handover' ? 'caught up with the end offsets' : 'done');
          phase = p.phase;
          progress = new CliProgress({ label: p.phase === 'replay' ? 'replay' : 'catching up with the live group', unit: 'messages', total: p.total });
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

async function rewind(opts: ReplayCliOptions, cfg: ReturnType<typeof loadWarehouseConsumerConfig>, group: string, log: ReturnType<typeof createLogger>, program: Command): Promise<void> {
  const t = opts.toDatetime ?? opts.toOffset;
  if (!t) return program.error('--rewind needs --to-datetime T or --to-offset earliest|N');
  const to: RewindTo = t.kind === 'earliest' ? t : t.kind === 'offset' ? t : { kind: 'timestamp', ms: t.ms };
  const click = loadClickstreamConfig();
  const schemas = { staging: opts.staging ?? cfg.schemas.staging, analytics: opts.analytics ?? cfg.schemas.analytics, meta: cfg.schemas.meta };
  const topics = group === click.group ? [click.topic] : cfg.topics;
  const pool = createWarehousePool(cfg.stack.warehouseUrl, 2);
  const admin = new kafkajs.Kafka(kafkaClientConfig(cfg.stack.kafka, { clientId: `rewind-${group}`, logCreator: kafkaLogCreator(log) })).admin();
  await admin.connect();
  try {
    const r = await rewindGroup({
      pool, admin, schemas, group, topics, to, log, dryRun: opts.dryRun,
      lockKeys: [namespaceLockSql(schemas).params[0]!, clickstreamLockKey(schemas)],
    });
    if (opts.json) process.stdout.write(`${JSON.stringify({ group, dryRun: !!opts.dryRun, ...r })}\n`);
    else {
      for (const m of r.moved) process.stdout.write(`${m.topic}/${m.partition}: ${m.from ?? '(none)'} -> ${m.to}${m.clampedToLogStart ? ' (log start)' : ''}\n`);
      process.stdout.write(`rewind of ${group}${opts.dryRun ? ' (dry run, nothing moved)' : ''}: ${r.moved.length} partition(s) moved back, ${r.unchanged.length} already at or before the target; ` +
        `${r.messages} messages to re-apply${opts.dryRun ? '' : '; running members seek within a second, stopped ones on start'}\n`);
    }
  } finally {
    await admin.disconnect();
    await pool.end();
  }
}

async function main(): Promise<void> {
  const program = replayCommand().parse();
  await runReplay(program.opts<ReplayCliOptions>(), program);
}

if (isMain(import.meta.url)) main().catch((err) => exitOnStartupError('replay', err));
