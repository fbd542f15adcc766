import { describe, expect, it } from 'vitest';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { createLogger } from '../../src/logger.ts';
import { ShopSim } from '../helpers/debezium-fixtures.ts';
import { produceFixtures, useFixtureStack } from '../helpers/fixture-env.ts';
import { stackEnv } from '../helpers/stack-env.ts';

/**
 * A backlog transaction may run longer than the session timeout on a busy
 * machine (its 5 s budget is an estimate). The member heartbeats while it
 * runs, so it keeps its partitions: here one transaction is held for 2.5
 * session timeouts by a trigger that sleeps once, and the group must not
 * have rebalanced (one join), the transaction must have run once, and the
 * warehouse must end exact.
 */
const s = useFixtureStack('test-slow-tx', 'cons_slowtx', 1);

describe('a transaction longer than the session timeout', () => {
  it('keeps the partitions (no rebalance), runs once, and ends exact', async () => {
    const { kafka, admin, producer, pool, redis, env } = s;
    const sim = new ShopSim(11);
    const products: string[] = [];
    const customers: string[] = [];
    sim.transaction(() => {
      for (let i = 0; i < 5; i++) products.push(sim.upsertProduct());
      for (let i = 0; i < 10; i++) customers.push(sim.insertCustomer());
    });
    const orders: string[] = [];
    for (let i = 0; i < 20; i++) sim.transaction(() => orders.push(sim.insertOrder(sim.pick(customers), [sim.pick(products)])));
    await produceFixtures(producer, env, sim.events);

    const sessionTimeoutMs = 6000;
    const slow = orders[10]!;
    const { stg, meta } = { stg: `"${env.schemas.staging}"`, meta: `"${env.schemas.meta}"` };
    await pool.query(`
      CREATE SEQUENCE ${meta}.slowtx_runs;
      CREATE FUNCTION ${stg}.slowtx() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.order_id = ${Number(slow)} THEN
          -- a sequence survives a rollback: counts the transactions that carried the order
          IF nextval('${meta}.slowtx_runs') = 1 THEN PERFORM pg_sleep(${(2.5 * sessionTimeoutMs) / 1000}); END IF;
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER slowtx BEFORE INSERT OR UPDATE ON ${stg}.stg_orders FOR EACH ROW EXECUTE FUNCTION ${stg}.slowtx();`);

    let joins = 0;
    const consumer = new WarehouseConsumer({
      kafka, registry: createRegistry(stackEnv.registryUrl), pool, redis, schemas: env.schemas, group: env.id,
      topics: env.topics, redisKeyPrefix: `${env.id}:`, log: createLogger('test-slowtx', 'silent'), maxMessagesPerTx: 4, sessionTimeoutMs,
      onConsumer: (c) => { c.on(c.events.GROUP_JOIN, () => { joins++; }); },
    });
    const ac = new AbortController();
    await consumer.start(ac.signal);
    try {
      await waitCaughtUp(admin, pool, env.schemas, env.id, env.topics, { timeoutMs: 90_000 });
    } finally {
      ac.abort();
      await consumer.stop();
    }
    const { rows: runs } = await pool.query(`SELECT last_value::int AS n FROM ${meta}.slowtx_runs`);
    expect(runs[0].n).toBe(1);
    expect(joins).toBe(1);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${stg}.stg_orders`);
    expect(rows[0].n).toBe(20);
    const client = await pool.connect();
    try {
      for (const d of await diffDerivedTables(client, env.schemas)) expect(d, d.table).toMatchObject({ missing: 0, unexpected: 0 });
    } finally {
      client.release();
    }
  });
});
