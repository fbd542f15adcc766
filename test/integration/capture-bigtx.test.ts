import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, spawnCapture, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { loadStackConfig } from '../../src/config/index.ts';
import { Kafka, logLevel } from '../../src/publisher/kafkajs.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/**
 * One 300k-row transaction through a capture with small buffers: every row
 * arrives, the slot is confirmed only once the whole transaction is in Kafka,
 * and the process's peak RSS stays bounded (records are sent as they are
 * decoded; the transaction is never held in memory whole).
 */
const ROWS = 300_000;

describe('capture: a very large transaction', () => {
  let h: Harness;
  let child: ChildProcess | null = null;
  afterAll(async () => {
    child?.kill('SIGKILL');
    if (child) await new Promise((r) => child!.once('exit', r));
    await h?.cleanup();
  });

  it(`streams a ${ROWS}-row transaction in bounded memory`, async () => {
    h = await createHarness(uniqueId('cap_bigtx'));
    const s = h.id;
    child = spawnCapture({ ...h.env, CAPTURE_SNAPSHOT: 'never', CAPTURE_HIGH_WATER_MB: '8', CAPTURE_LOW_WATER_MB: '2' });
    await waitFor('slot active', async () => {
      const { rows } = await h.pool.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [s]);
      return rows[0]?.active_pid ? true : null;
    }, 60_000);
    // An active slot may still be waiting for its consistent point; wait for a probe (in another table) to arrive.
    const probeAdmin = new Kafka({ brokers: loadStackConfig().kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
    await probeAdmin.connect();
    let probe = 0;
    await waitFor('a probe row in Kafka', async () => {
      probe += 1;
      await h.pool.query(`INSERT INTO ${s}.products (product_id, product_name, category, price) VALUES ($1, 'probe', 'x', 1)`, [probe]);
      await new Promise((r) => setTimeout(r, 1000));
      const o = await probeAdmin.fetchTopicOffsets(h.topic('products')).catch(() => null);
      return o && Number(o[0]!.high) > 0 ? true : null;
    }, 120_000);
    await probeAdmin.disconnect();
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment)
      SELECT g, 'customer' || g || '@example.com', 'First' || g, 'Last' || g, 'silver' FROM generate_series(1, ${ROWS}) g`);
    const { rows } = await h.pool.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
    const end = parseLsn(rows[0]!.l);

    const admin = new Kafka({ brokers: loadStackConfig().kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    let confirmedEarly = false;
    let peakMiB = 0;
    await waitFor('all rows in Kafka and the slot confirmed', async () => {
      const status = readFileSync(`/proc/${child!.pid}/status`, 'utf8');
      peakMiB = Math.round(Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
      const offsets = await admin.fetchTopicOffsets(h.topic('customers')).catch(() => [{ high: '0' }]);
      const inKafka = Number(offsets[0]!.high);
      const r = await h.pool.query<{ l: string }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [s]);
      const confirmed = parseLsn(r.rows[0]!.l);
      // the transaction's commit is the last WAL record before `end`: confirming past it early would be a bug
      if (confirmed >= end - 4096n && inKafka < ROWS) confirmedEarly = true;
      return inKafka >= ROWS && confirmed >= end - 4096n ? true : null;
    }, 110_000);
    await admin.disconnect();
    expect(confirmedEarly).toBe(false);
    const offsets = await (async () => {
      const a = new Kafka({ brokers: loadStackConfig().kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
      await a.connect();
      const o = await a.fetchTopicOffsets(h.topic('customers'));
      await a.disconnect();
      return o;
    })();
    expect(Number(offsets[0]!.high)).toBe(ROWS); // no crash here: exactly once
    console.info(`peak RSS of the capture process: ${peakMiB} MiB`);
    expect(peakMiB).toBeLessThan(300);
  }, 150_000);
});
