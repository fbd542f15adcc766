import { describe, expect, it } from 'vitest';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { createLogger } from '../../src/logger.ts';
import { readStoredOffsets } from '../../src/sinks/postgres/batch-tx.ts';
import { sleep } from '../../src/util/sleep.ts';
import { ShopSim } from '../helpers/debezium-fixtures.ts';
import { produceFixtures, useFixtureStack } from '../helpers/fixture-env.ts';
import { stackEnv } from '../helpers/stack-env.ts';

/**
 * The consumer decodes the next slice of a batch while the current one's
 * transaction runs. A transaction that fails must leave nothing stored or
 * acknowledged past itself, in Postgres (the source of truth) and in
 * Kafka: here a trigger fails every transaction that carries one order
 * (with a retriable serialization failure, so the consumer retries), and
 * the stored offsets are watched while it does; once the trigger goes, the
 * warehouse catches up exactly.
 */
const s = useFixtureStack('test-tx-failure', 'cons_txfail', 1);

describe('a failed transaction with the next slice decoded ahead', () => {
  it('stores and acknowledges no offset past the failed slice, retries it, and ends exact', async () => {
    const { kafka, admin, producer, pool, redis, env } = s;
    const sim = new ShopSim(7);
    const products: string[] = [];
    const customers: string[] = [];
    sim.transaction(() => {
      for (let i = 0; i < 5; i++) products.push(sim.upsertProduct());
      for (let i = 0; i < 10; i++) customers.push(sim.insertCustomer());
    });
    const orders: string[] = [];
    for (let i = 0; i < 40; i++) sim.transaction(() => orders.push(sim.insertOrder(sim.pick(customers), [sim.pick(products), sim.pick(products)])));
    await produceFixtures(producer, env, sim.events);
    const ordersTopic = env.encoders.get('orders')!.topic;
    // One partition, a fresh topic: the n-th orders event is at offset n.
    const orderEvents = sim.events.filter((e) => e.table === 'orders');
    const poisoned = orders[25]!;
    const poisonedOffset = orderEvents.findIndex((e) => String(e.after?.order_id) === poisoned);
    expect(poisonedOffset).toBeGreaterThan(10);

    const { stg, meta } = { stg: `"${env.schemas.staging}"`, meta: `"${env.schemas.meta}"` };
    await pool.query(`
      CREATE SEQUENCE ${meta}.txfail_attempts;
      CREATE FUNCTION ${stg}.txfail() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.order_id = ${Number(poisoned)} THEN
          PERFORM nextval('${meta}.txfail_attempts'); -- a sequence survives the rollback: counts attempts
          RAISE EXCEPTION 'injected failure' USING ERRCODE = '40001';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER txfail BEFORE INSERT OR UPDATE ON ${stg}.stg_orders FOR EACH ROW EXECUTE FUNCTION ${stg}.txfail();`);

    const consumer = new WarehouseConsumer({
      kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis, schemas: env.schemas, group: env.id,
      topics: env.topics, redisKeyPrefix: `${env.id}:`, log: createLogger('test-txfail', 'silent'), maxMessagesPerTx: 4, sessionTimeoutMs: 6000,
    });
    const ac = new AbortController();
    await consumer.start(ac.signal);
    try {
      const attempts = async () => Number((await pool.query(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM ${meta}.txfail_attempts`)).rows[0].n);
      const storedOrders = async () => BigInt((await readStoredOffsets(pool, env.schemas, env.id)).get(`${ordersTopic}/0`) ?? -1);
      let seenStored = -1n;
      for (let i = 0; (await attempts()) < 3; i++) {
        if (i > 600) throw new Error('the poisoned transaction was not retried');
        const s = await storedOrders();
        if (s > seenStored) seenStored = s;
        // Never past the failing message, while it fails.
        expect(s).toBeLessThanOrEqual(BigInt(poisonedOffset));
        await sleep(100);
      }
      // The slices before it were applied, so the failure is the poisoned one's, not a stall.
      expect(await storedOrders()).toBeGreaterThan(0n);
      expect(await storedOrders()).toBeLessThanOrEqual(BigInt(poisonedOffset));
      const { rows: past } = await pool.query(`SELECT count(*)::int AS n FROM ${stg}.stg_orders WHERE order_id = ANY($1::bigint[])`, [orders.slice(25)]);
      expect(past[0].n).toBe(0);
      const committed = await admin.fetchOffsets({ groupId: env.id, topics: [ordersTopic] });
      for (const p of committed[0]!.partitions) expect(BigInt(p.offset)).toBeLessThanOrEqual(BigInt(poisonedOffset));

      await pool.query(`DROP TRIGGER txfail ON ${stg}.stg_orders`);
      await waitCaughtUp(admin, pool, env.schemas, env.id, env.topics, { timeoutMs: 90_000 });
    } finally {
      ac.abort();
      await consumer.stop();
    }
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${stg}.stg_orders`);
    expect(rows[0].n).toBe(40);
    const client = await pool.connect();
    try {
      for (const d of await diffDerivedTables(client, env.schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
  });
});
