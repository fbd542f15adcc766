import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import type { InputFormats } from '../consumer/decode.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { findRetentionGaps } from '../consumer/stored-offsets.ts';
import { errorMessage, ReplayRefusedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { migrate, warehouseSchemaNames } from '../migrations/runner.ts';
import { readStoredOffsets } from '../sinks/postgres/batch-tx.ts';
import { fullRefresh } from '../../consumers/warehouse/full-refresh.ts';
import type { ClvThresholds } from '../../consumers/warehouse/derived-sql.ts';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { ClvRedisSink } from '../sinks/redis/clv-redis.ts';
import { escapeGlob, scanKeys, unlinkKeys, type RedisClient } from '../sinks/redis/redis-client.ts';
import { sleep } from '../util/sleep.ts';
import { rowsMissingFromRebuild, trimmedTables } from './rebuild-coverage.ts';
import { covers, replayedCount, resolveRanges, tpKey, type PartitionRange, type ReplayFrom } from './start-offsets.ts';
import { swapRebuilt, SwapNotReadyError, type SwapResult } from './swap.ts';

/**
 * Replay of the warehouse consumer group into fresh tables, swapped in when
 * caught up (docs/operations.md, "Replay and rebuild"):
 *
 * 1. fresh schemas `<staging>__rb_<stamp>` / `<analytics>__rb_<stamp>` built
 *    by the warehouse migrations (offsets stay in the shared meta schema);
 * 2. a new group `<group>__rb_<stamp>` whose Postgres offsets are set to the
 *    start position before it joins (the consumer seeks to them on
 *    assignment), consuming with the ordinary WarehouseConsumer;
 * 3. progress against the end offsets captured at the start;
 * 4. the swap (swap.ts), retried until the rebuild covers the live group.
 */
export interface ReplayOptions {
  pool: pg.Pool;
  kafka: Kafka;
  registry: SchemaRegistry;
  redis: RedisClient;
  live: WarehouseSchemas;
  group: string;
  topics: string[];
  redisKeyPrefix: string;
  thresholds?: ClvThresholds;
  from: ReplayFrom;
  /** Keep the replaced tables in `<schema>__old_<stamp>` instead of dropping them. */
  keepOld?: boolean;
  /**
   * Up to the end offsets, apply staging and history only and then build
   * the derived tables in one set-based refresh (default true): far faster
   * than recomputing key by key for a large backlog. The handover after it
   * always recomputes per key, like the live group.
   */
  deferDerived?: boolean;
  log: Logger;
  onProgress?: (p: { phase: 'replay' | 'handover'; done: number; total: number }) => void;
  maxMessagesPerTx?: number;
  partitionsConcurrently?: number;
  /** The live group's input formats (CONSUMER_VALUE_FORMAT…, CONSUMER_DECIMAL_SCALES): a replay must read what it read. */
  inputFormats?: InputFormats;
  signal?: AbortSignal;
  /** Suffix of the fresh names; default a base-36 timestamp. */
  stamp?: string;
  pollMs?: number;
  /**
   * Swap in even when a topic's log start has moved and the rebuild lacks
   * rows the live staging holds (--trust-topics): for live tables known to
   * hold rows the source no longer has. Default false: refused.
   */
  trustTopics?: boolean;
}

export interface ReplayResult {
  stamp: string;
  rebuildGroup: string;
  ranges: PartitionRange[];
  messages: number;
  swap: SwapResult;
  /** Where the replaced tables are, when kept. */
  kept?: { staging: string; analytics: string };
  durationMs: number;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function name(base: string, suffix: string): string {
  const n = `${base}${suffix}`;
  if (!IDENT.test(n)) throw new Error(`schema name "${n}" is too long or not a plain identifier; use shorter schema names or --stamp`);
  return n;
}

/** The session advisory lock a rebuild holds for its whole run (a rewind refuses to run beside it). */
export function replayGuardKey(live: WarehouseSchemas): string {
  return `cdc-replay:${live.staging}/${live.analytics}`;
}

export async function replayWarehouse(o: ReplayOptions): Promise<ReplayResult> {
  const started = Date.now();
  const stamp = o.stamp ?? Date.now().toString(36);
  const rebuilt: WarehouseSchemas = { staging: name(o.live.staging, `__rb_${stamp}`), analytics: name(o.live.analytics, `__rb_${stamp}`), meta: o.live.meta };
  const old = { staging: name(o.live.staging, `__old_${stamp}`), analytics: name(o.live.analytics, `__old_${stamp}`) };
  const rebuildGroup = `${o.group}__rb_${stamp}`;
  const rbPrefix = `${o.redisKeyPrefix}rebuild_${stamp}:`;
  const { meta } = quoted(o.live);
  const log = o.log.child({ rebuildGroup });
  const poll = o.pollMs ?? 500;

  // One replay per namespace at a time: a second one would swap the first one's tables out again.
  const guard = await o.pool.connect();
  const guardKey = replayGuardKey(o.live);
  const { rows: got } = await guard.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [guardKey]);
  if (!got[0]?.ok) {
    guard.release();
    throw new Error(`another replay of ${o.live.staging}/${o.live.analytics} is running`);
  }
  const admin = o.kafka.admin();
  await admin.connect();
  let consumer: WarehouseConsumer | undefined;
  let ac: AbortController | undefined;
  const startConsumer = async (deferDerived: boolean) => {
    ac = new AbortController();
    consumer = new WarehouseConsumer({
      kafka: o.kafka, registry: o.registry, pool: o.pool, redis: o.redis, schemas: rebuilt, group: rebuildGroup, topics: o.topics,
      // Its CLV figures go to keys of its own (removed afterwards): the live keys only change through the swap's outbox entries.
      redisKeyPrefix: rbPrefix, log, thresholds: o.thresholds, maxMessagesPerTx: o.maxMessagesPerTx, partitionsConcurrently: o.partitionsConcurrently, deferDerived,
      inputFormats: o.inputFormats,
    });
    await consumer.start(ac.signal);
  };
  const stopConsumer = async () => {
    ac?.abort();
    await consumer?.stop();
    consumer = undefined;
  };
  let swapped = false;
  try {
    const ranges = await resolveRanges(admin, o.topics, o.from);
    const partial = ranges.filter((r) => r.start > r.low);
    if (partial.length > 0) {
      // Tables built from the middle of the log would lack every older row: never swapped in (docs/operations.md).
      throw new ReplayRefusedError(`the rebuild would start after the first retained offset on ${partial.length} partition(s) (e.g. ${tpKey(partial[0]!.topic, partial[0]!.partition)} at ${partial[0]!.start}, log start ${partial[0]!.low}); ` +
        'the rebuilt tables would lack everything before it. To re-apply the changes since then onto the live tables: npm run replay -- --rewind --to-datetime T (or --to-offset N); to rebuild: --from-offset earliest');
    }
    const gaps = await findRetentionGaps(admin, o.pool, o.live, o.group, o.topics);
    if (gaps.length > 0) {
      // The rebuild is the way back from a gap, but only complete if the topics hold every key's latest change (compacted, or re-snapshotted).
      log.warn({ gaps }, 'replay: the live group has changes lost to retention; the rebuild is complete only if the topics hold every key\'s latest change (compacted topics, or a re-snapshot first)');
    }
    // A moved log start may have taken the only change of some keys: checked against the live staging before the swap
    // (not when the live group has a gap: its tables are the incomplete ones then).
    const trimmed = gaps.length > 0 || o.trustTopics ? [] : trimmedTables(ranges);
    if (trimmed.length > 0) log.warn({ tables: trimmed }, 'replay: the log start has moved on these tables\' topics; the rebuild is swapped in only if it holds every row the live staging holds');
    log.info({ rebuilt, from: o.from.kind, partitions: ranges.length, messages: replayedCount(ranges, new Map()).total }, 'replay: building fresh tables');
    await migrate(o.pool, 'warehouse', { schemas: warehouseSchemaNames(rebuilt), log });
    // The start position, where the consumer's seek-on-assignment finds it.
    await o.pool.query(
      `INSERT INTO ${meta}.consumer_offsets (consumer_group, topic, partition, next_offset)
       SELECT $1, r.topic, r.partition, r.off FROM jsonb_to_recordset($2::jsonb) AS r(topic text, partition int, off bigint)`,
      [rebuildGroup, JSON.stringify(ranges.map((r) => ({ topic: r.topic, partition: r.partition, off: r.start.toString() })))]);
    const deferred = o.deferDerived ?? true;
    await startConsumer(deferred);

    for (;;) {
      o.signal?.throwIfAborted();
      const c = replayedCount(ranges, await readStoredOffsets(o.pool, rebuilt, rebuildGroup));
      o.onProgress?.({ phase: 'replay', ...c });
      if (c.caughtUp) break;
      await sleep(poll, o.signal);
    }
    log.info('replay: caught up with the end offsets taken at the start');
    if (deferred) {
      // Stopped first: the refresh must see staging exactly at the offsets stored with it.
      await stopConsumer();
      const r = await fullRefresh(o.pool, rebuilt, { redisKeyPrefix: rbPrefix, thresholds: o.thresholds, outbox: false });
      log.info({ factOrders: r.factOrders, customers: r.customers, ms: r.ms }, 'replay: derived tables built from the rebuilt staging');
    }
    log.info('replay: handing over');

    let swap: SwapResult | undefined;
    for (let attempt = 1; !swap; attempt++) {
      o.signal?.throwIfAborted();
      // Catch up with the live group without holding anything, so the wait under the lock below is short.
      for (;;) {
        o.signal?.throwIfAborted();
        const [rb, live] = await Promise.all([readStoredOffsets(o.pool, rebuilt, rebuildGroup), readStoredOffsets(o.pool, o.live, o.group)]);
        if (covers(rb, live)) break;
        // Started only when there is something to catch up with: a group join
        // (and, after the deferred phase, the old member's leave) costs
        // seconds, up to a session timeout on a busy machine.
        if (!consumer) await startConsumer(false);
        const c = replayedCount(ranges.map((r) => ({ ...r, end: BigInt(live.get(tpKey(r.topic, r.partition)) ?? r.end) })), rb);
        o.onProgress?.({ phase: 'handover', ...c });
        await sleep(Math.min(poll, 200), o.signal);
      }
      try {
        swap = await swapRebuilt(o.pool, {
          live: o.live, rebuilt, old, liveGroup: o.group, rebuildGroup, redisKeyPrefix: o.redisKeyPrefix, signal: o.signal,
          rebuildCovers: async (liveOffsets) => {
            // The live group is frozen now; the rebuild only has to reach it.
            const deadline = Date.now() + 5_000;
            while (!covers(await readStoredOffsets(o.pool, rebuilt, rebuildGroup), liveOffsets)) {
              if (Date.now() > deadline) throw new SwapNotReadyError('the rebuild did not reach the live group within 5 s');
              await sleep(50);
            }
            await stopConsumer();
            const lacking = await rowsMissingFromRebuild(o.pool, o.live, rebuilt, trimmed);
            if (lacking.length > 0) {
              throw new ReplayRefusedError(`the rebuilt tables lack rows the live ones hold (${lacking.map((m) => `stg_${m.table}: ${m.missing}, e.g. key ${m.samples.join(' ')}`).join('; ')}): ` +
                'the topics\' log start has moved (retention or deleted records) and took the only change of those keys; nothing was swapped. ' +
                're-snapshot the tables (npx shopstream snapshot <table>), wait until the live group has caught up, then rebuild again (docs/operations.md, "What a full rebuild needs from retention")');
            }
          },
        });
      } catch (err) {
        if (!(err instanceof SwapNotReadyError) || attempt >= 10) throw err;
        log.warn({ attempt, err: err.message }, 'replay: not ready to swap; catching up again');
      }
    }
    swapped = true;
    log.info({ handedOver: swap.handedOver, clvChanged: swap.clvChanged, clvRemoved: swap.clvRemoved, recreatedViews: swap.recreatedViews }, 'replay: swapped in');
    // The swap queued changed CLV figures in the live outbox; write them now
    // (a running live consumer would too: the version guard makes both safe).
    const left = await new ClvRedisSink(o.redis, o.pool, o.live, o.redisKeyPrefix, log).flush();
    if (left > 0) log.warn({ pending: left }, 'replay: Redis not updated yet; the live consumer flushes the outbox when Redis is back');
    return {
      stamp, rebuildGroup, ranges, messages: replayedCount(ranges, new Map(Object.entries(swap.handedOver))).total,
      swap, kept: o.keepOld ? old : undefined, durationMs: Date.now() - started,
    };
  } finally {
    await stopConsumer().catch((err) => log.warn({ err: errorMessage(err) }, 'replay: stopping the rebuild consumer'));
    await cleanup(o, { rebuilt, old, rebuildGroup, rbPrefix, dropOld: swapped && !o.keepOld, admin }).catch((err) => log.warn({ err: errorMessage(err) }, 'replay: cleanup incomplete'));
    await admin.disconnect();
    await guard.query('SELECT pg_advisory_unlock(hashtext($1))', [guardKey]).catch(() => {});
    guard.release();
  }
}

/** Removes everything of the rebuild but the swapped-in tables: its leftover schemas, offsets, outbox, Redis keys and Kafka group. */
async function cleanup(o: ReplayOptions, c: { rebuilt: WarehouseSchemas; old: { staging: string; analytics: string }; rebuildGroup: string; rbPrefix: string; dropOld: boolean; admin: ReturnType<Kafka['admin']> }): Promise<void> {
  const { meta } = quoted(o.live);
  // What is left in the rebuild schemas is only what the swap did not take (the other group's empty tables), or everything after a failure.
  const drops = [c.rebuilt.staging, c.rebuilt.analytics, ...(c.dropOld ? [c.old.staging, c.old.analytics] : [])];
  for (const s of drops) await o.pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await o.pool.query(`DELETE FROM ${meta}.consumer_offsets WHERE consumer_group = $1`, [c.rebuildGroup]);
  await o.pool.query(`DELETE FROM ${meta}.dead_letters WHERE consumer_group = $1`, [c.rebuildGroup]);
  await o.pool.query(`DELETE FROM ${meta}.redis_outbox WHERE key_prefix = $1`, [c.rbPrefix]);
  await o.pool.query(`DELETE FROM ${meta}.schema_migrations WHERE migration_set = 'warehouse' AND namespace = $1`, [`${c.rebuilt.staging}/${c.rebuilt.analytics}`]);
  for await (const keys of scanKeys(o.redis, `${escapeGlob(c.rbPrefix)}*`)) await unlinkKeys(o.redis, keys);
  await c.admin.deleteGroups([c.rebuildGroup]).catch(() => {});
}
