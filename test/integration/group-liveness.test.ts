import kafkajs from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { createGroupClients } from '../../src/consumer/group-clients.ts';
import { UnavailableError } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { startThrowawayKafka, type ThrowawayKafka } from '../helpers/throwaway-kafka.ts';

/**
 * Issue 12: a member that cannot reach its group coordinator must not stay
 * alive and idle. On a broker of its own, a group member runs; while its
 * heartbeats are accepted the liveness guard stays quiet for several times
 * its bound; once the broker stops answering (SIGSTOP) the guard reports a
 * retriable KAFKA_UNAVAILABLE within the bound (plus its check interval).
 */
describe('group liveness guard', () => {
  let broker: ThrowawayKafka | undefined;
  afterEach(async () => {
    if (broker) process.kill(broker.pid, 'SIGCONT');
    await broker?.stop();
    broker = undefined;
  });

  it('quiet while heartbeats are accepted, reports a member whose coordinator stops answering', async () => {
    broker = await startThrowawayKafka();
    const log = createLogger('test', 'silent');
    const kafka = new kafkajs.Kafka({ clientId: 'liveness', brokers: broker.brokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin0 = kafka.admin();
    await admin0.connect();
    await admin0.createTopics({ topics: [{ topic: 'liveness.t', numPartitions: 1 }], waitForLeaders: true });
    await admin0.disconnect();

    const ac = new AbortController();
    const fatal: Array<{ err: Error; at: number }> = [];
    const boundMs = 4000;
    const { consumer } = createGroupClients(kafka, {
      group: 'liveness', log, signal: ac.signal, name: 'liveness-consumer', isStopping: () => false,
      sessionTimeoutMs: 6000, livenessBoundMs: boundMs, onFatal: (err) => fatal.push({ err, at: Date.now() }),
    });
    let joined = false;
    consumer.on(consumer.events.GROUP_JOIN, () => { joined = true; });
    await consumer.connect();
    await consumer.subscribe({ topics: ['liveness.t'], fromBeginning: true });
    await consumer.run({ eachBatch: async () => {} });
    for (let i = 0; i < 300 && !joined; i++) await new Promise((r) => setTimeout(r, 100));
    expect(joined).toBe(true);

    // Healthy: an idle member's heartbeats keep the guard quiet well past its bound.
    await new Promise((r) => setTimeout(r, boundMs * 3));
    expect(fatal.map((f) => f.err.message)).toEqual([]);

    const stoppedAt = Date.now();
    process.kill(broker.pid, 'SIGSTOP');
    for (let i = 0; i < 150 && fatal.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(fatal).toHaveLength(1);
    const { err, at } = fatal[0]!;
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).code).toBe('KAFKA_UNAVAILABLE');
    expect(err.message).toMatch(/no heartbeat accepted/);
    // The last accepted heartbeat was at most one interval (1.2 s) before the stop.
    expect(at - stoppedAt).toBeLessThanOrEqual(boundMs + 1000);
    expect(at - stoppedAt).toBeGreaterThanOrEqual(boundMs - 1500);

    process.kill(broker.pid, 'SIGCONT');
    ac.abort();
    await consumer.disconnect().catch(() => {});
  }, 120_000);
});
