import type pg from 'pg';
import type { RowChange } from '../../src/consumer/envelope.ts';
import type { StageTimer } from '../../src/consumer/stage-timer.ts';
import { runBatchTransaction, type BatchesOutcome, type BatchInput, type BatchOutcome, type PartitionBatch } from '../../src/sinks/postgres/batch-tx.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import type { OutboxRow } from '../../src/sinks/redis/clv-redis.ts';
import type { ClvThresholds } from './derived-sql.ts';
import { captureBefore, directKeys, recomputeAffected } from './recompute.ts';
import { appendChangeLog, loggable, materializeChangeLog } from './change-log.ts';
import { applyStaging, expandTruncate } from './staging-apply.ts';

/**
 * The warehouse group's work inside a batch transaction
 * (src/sinks/postgres/batch-tx.ts): staging and history, then the derived
 * tables of the affected keys, recomputed from staging.
 */
export interface BatchOptions {
  redisKeyPrefix: string;
  thresholds?: ClvThresholds;
  /**
   * Apply staging, history and offsets only, leaving the derived tables to
   * one `fullRefresh` once caught up: how a replay from offset 0 rebuilds
   * in about the time of a batch full refresh instead of key by key. The
   * changes go to the change log (change-log.ts), which `fullRefresh`
   * materializes into staging and history first.
   */
  deferDerived?: boolean;
  /** Collects the time of each step of the transaction (src/consumer/stage-timer.ts). */
  timer?: StageTimer;
}

/** Splits at truncates: a truncate removes what staging holds at its point in the stream, so it is applied between the runs around it. */
function segments(changes: RowChange[]): RowChange[][] {
  const out: RowChange[][] = [[]];
  for (const ch of changes) {
    if (ch.op === 't') out.push([ch], []);
    else out[out.length - 1]!.push(ch);
  }
  return out.filter((s) => s.length > 0);
}

/** random_page_cost inside batch transactions (see applyBatches). */
export const BATCH_RANDOM_PAGE_COST = 1.1;

/** One partition's batch as one transaction (see applyBatches). */
export async function applyBatch(pool: pg.Pool, schemas: WarehouseSchemas, input: BatchInput, opts: BatchOptions): Promise<BatchOutcome> {
  const { group, ...part } = input;
  return (await applyBatches(pool, schemas, group, [part], opts)).parts[0]!;
}

export async function applyBatches(pool: pg.Pool, schemas: WarehouseSchemas, group: string, parts: PartitionBatch[], opts: BatchOptions): Promise<BatchesOutcome> {
  return runBatchTransaction(pool, schemas, group, parts, async (client, changes, lap) => {
    // Every statement of a batch reads a few rows per affected key. With the
    // default random_page_cost (4) the planner's plans for a few hundred keys
    // hashed or scanned whole staging tables instead (stg_order_items for
    // fact_orders, order_status_changes for order_fulfillment), so a batch
    // cost more the larger the tables grew. On a 60k-order, 180k-line
    // warehouse and 700 orders, 1.1 (pages cached, as they are here) took
    // the fact_orders SELECT from 190 to 57 ms and order_fulfillment from 32
    // to 5 ms, warm (docs/benchmarks-consumers.md). LOCAL: this transaction only.
    await client.query(`SET LOCAL random_page_cost = ${BATCH_RANDOM_PAGE_COST}`);
    const outbox: OutboxRow[] = [];
    for (const seg of segments(changes)) {
      if (opts.deferDerived) {
        if (loggable(seg)) {
          await appendChangeLog(client, schemas, seg);
          lap('tx.changeLog');
          continue;
        }
        // What this run does depends on staging at its point of the stream: staging catches up with the log first.
        await materializeChangeLog(client, schemas);
      }
      const run = seg[0]!.op === 't' ? await expandTruncate(client, schemas, seg[0]!) : seg;
      if (run.length === 0) continue;
      if (opts.deferDerived) {
        await applyStaging(client, schemas, run);
        continue;
      }
      const keys = directKeys(run);
      const pre = await captureBefore(client, schemas, keys);
      lap('tx.captureBefore');
      await applyStaging(client, schemas, run);
      lap('tx.staging');
      outbox.push(...(await recomputeAffected(client, schemas, keys, pre, { ...opts, lap })).outbox);
    }
    return outbox;
  }, opts.timer);
}
