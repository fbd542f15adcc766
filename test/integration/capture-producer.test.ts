import { afterEach, describe, expect, it } from 'vitest';
import { consumeUntil, createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { Partitioners } from '../../src/publisher/kafkajs.ts';
import { loadRdkafka } from '../../src/publisher/rdkafka-transport.ts';
import type { CaptureService } from '../../src/source/capture.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/**
 * The librdkafka producer (CAPTURE_PRODUCER=rdkafka) against the real stack:
 * keys land where kafkajs (and the Java client) put them, and the water
 * marks bound what is buffered. Order per key and the SIGKILL test run for
 * both producers in capture-stream and capture-crash.
 */
let h: Harness | undefined;
let cap: CaptureService | undefined;
afterEach(async () => {
  await cap?.stop();
  await h?.cleanup();
  cap = undefined;
  h = undefined;
});

describe('capture: librdkafka producer', () => {
  it('puts every key on the partition kafkajs\' murmur2 partitioner picks', async () => {
    expect(() => loadRdkafka()).not.toThrow();
    h = await createHarness(uniqueId('cap_rdk_part'));
    const s = h.id;
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_PRODUCER: 'rdkafka', CAPTURE_TOPIC_PARTITIONS: '3' }));
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) SELECT g, 'c' || g || '@x', 'F', 'L', 'bronze' FROM generate_series(1, 300) g`);
    const msgs = await consumeUntil([h.topic('customers')], (all) => all.length >= 300, 60_000);
    expect(msgs).toHaveLength(300);
    const partitioner = Partitioners.DefaultPartitioner();
    const partitionMetadata = [0, 1, 2].map((partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 }));
    const expected = msgs.map((m) => partitioner({ topic: m.topic, partitionMetadata, message: { key: m.raw.key, value: m.raw.value } }));
    expect(msgs.map((m) => m.partition)).toEqual(expected);
    // murmur2 spreads 300 keys over all three partitions
    expect(new Set(expected).size).toBe(3);
  });

  it('pauses the replication stream at the high-water mark: buffered bytes stay bounded while a backlog drains', async () => {
    expect(() => loadRdkafka()).not.toThrow();
    h = await createHarness(uniqueId('cap_rdk_bp'));
    const s = h.id;
    const highWater = 1 << 20;
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_PRODUCER: 'rdkafka', CAPTURE_HIGH_WATER_MB: '1', CAPTURE_LOW_WATER_MB: '0' }));
    await cap.stop();
    // 60k rows in 6 transactions, written while the capture is stopped: far more than 1 MiB of records.
    for (let k = 0; k < 6; k++) {
      await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment)
        SELECT g, 'customer' || g || '@example.com', 'First' || g, 'Last' || g, 'gold' FROM generate_series(${k * 10_000 + 1}, ${(k + 1) * 10_000}) g`);
    }
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_PRODUCER: 'rdkafka', CAPTURE_HIGH_WATER_MB: '1', CAPTURE_LOW_WATER_MB: '0' }));
    let maxBuffered = 0;
    const c = cap;
    const timer = setInterval(() => { maxBuffered = Math.max(maxBuffered, c.metrics.bufferedBytes?.() ?? 0); }, 2);
    try {
      await waitFor('all 60k acknowledged', async () => (c.metrics.ackedTotal >= 60_000 ? true : null), 120_000);
    } finally {
      clearInterval(timer);
    }
    // Over the mark by at most what one socket read decodes before the pause takes effect.
    expect(maxBuffered).toBeGreaterThan(highWater / 2);
    expect(maxBuffered).toBeLessThan(highWater + 2 * (1 << 20));
    const msgs = await consumeUntil([h.topic('customers')], (all) => all.length >= 60_000, 90_000, false);
    expect(msgs).toHaveLength(60_000);
  });
});
