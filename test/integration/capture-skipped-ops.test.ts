import { afterEach, describe, expect, it } from 'vitest';
import { consumeUntil, createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import type { CaptureService } from '../../src/source/capture.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/**
 * CAPTURE_SKIPPED_OPERATIONS=t, Debezium's default (skipped.operations=t):
 * a truncate publishes nothing, the changes around it arrive in order, and
 * the slot still moves past it (nothing is held back waiting for it).
 */
let h: Harness | undefined;
let cap: CaptureService | undefined;
afterEach(async () => {
  await cap?.stop();
  await h?.cleanup();
});

describe('capture: skipped operations', () => {
  it('skips truncates when asked, and confirms the slot past them', async () => {
    h = await createHarness(uniqueId('cap_skip'));
    const s = h.id;
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_SKIPPED_OPERATIONS: 't' }));
    const ins = (id: number) => h!.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES ($1, 'a@x', 'A', 'B', 'gold')`, [id]);
    await ins(1);
    await h.pool.query(`TRUNCATE ${s}.customers CASCADE`);
    await h.pool.query(`TRUNCATE ${s}.customers CASCADE`);
    await ins(2);
    const { rows: [end] } = await h.pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const msgs = await consumeUntil([h.topic('customers')], (all) => all.length >= 2, 30_000);
    // Give a truncate that should not be there time to show up behind the inserts.
    await new Promise((r) => setTimeout(r, 1500));
    const again = await consumeUntil([h.topic('customers')], (all) => all.length >= 3, 3_000);
    expect(again.map((m) => [m.value.op, m.value.after.customer_id])).toEqual([['c', 1n], ['c', 2n]]);
    expect(msgs).toHaveLength(2);
    await waitFor('slot confirmed past the truncates', async () => {
      const { rows } = await h!.pool.query<{ ok: boolean }>('SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $1', [s, end!.lsn]);
      return rows[0]?.ok;
    }, 30_000);
  });
});
