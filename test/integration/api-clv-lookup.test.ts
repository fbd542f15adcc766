import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { clvKey } from '../../src/sinks/redis/clv-redis.ts';
import { fillRedis, get, insertClv, setup, stopApis } from '../helpers/api-harness.ts';

/**
 * The Redis read side of GET /customers/:id/clv as the fast path does it
 * (src/api/clv-store.ts): HMGET of the known fields, the writes of one event
 * loop turn batched into one socket write, canonical instants read without
 * the general parser. What it must keep: every lookup answered with its own
 * customer's figures, and anything Redis cannot answer well answered from
 * Postgres.
 */

afterEach(stopApis);

const servers: { srv: Server; sockets: Socket[] }[] = [];
afterEach(async () => {
  for (const { srv, sockets } of servers.splice(0)) {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
});

/**
 * A "Redis" that passes ioredis's ready check (INFO) and then never answers:
 * a stalled server, as opposed to a closed port.
 */
async function stalledRedis(): Promise<number> {
  const sockets: Socket[] = [];
  const srv = createServer((sock) => {
    sockets.push(sock);
    sock.on('data', (chunk) => {
      if (/info/i.test(chunk.toString('latin1'))) {
        const info = '# Server\r\nredis_version:7.0.0\r\nloading:0\r\n';
        sock.write(`$${Buffer.byteLength(info)}\r\n${info}\r\n`);
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  servers.push({ srv, sockets });
  return (srv.address() as { port: number }).port;
}

describe('Redis read side of a lookup', () => {
  it('answers many concurrent lookups, sent to Redis in shared writes, each with its own customer', async () => {
    // A generous timeout: 200 requests at once from this same process on a busy machine can take
    // longer than the 50 ms default, and a fallback is not what this test is about.
    const c = await setup({ API_REDIS_TIMEOUT_MS: '10000' });
    const n = 200;
    for (let i = 1; i <= n; i++) {
      await insertClv(c, { customer_id: String(i), total_revenue: `${i}.${String(i % 100).padStart(2, '0')}`, total_orders: i, version: i });
    }
    await fillRedis(c);

    const ids = Array.from({ length: n }, (_, i) => String(n - i));
    const answers = await Promise.all(ids.map((id) => get(c, `/customers/${id}/clv?as_of=2024-03-01T00:00:00Z`)));
    for (const [k, id] of ids.entries()) {
      const i = Number(id);
      expect(answers[k]!.status, id).toBe(200);
      expect(answers[k]!.body, id).toMatchObject({
        customer_id: id, total_orders: i, version: id, source: 'redis',
        total_revenue: `${i}.${String(i % 100).padStart(2, '0')}`, days_since_last_order: 59, recency_segment: 'cooling',
      });
    }
    const m = (await get(c, '/metrics')).body as string;
    expect(m).toMatch(new RegExp(`api_clv_redis_lookups_total\\{result="hit"\\} ${n}\\b`));
  });

  it('reads an entry whose optional fields are absent as nulls, and ignores fields it does not know', async () => {
    const c = await setup();
    await c.redis.hset(clvKey(`${c.id}:`, '77'), {
      customer_id: '77', total_orders: '2', total_items: '5', total_revenue: '10.50', avg_order_value: '5.25',
      first_order_date: '2024-01-01T00:00:00.000001Z', last_order_date: '2024-02-01T00:00:00.000001Z',
      customer_lifetime_days: '31', value_segment: 'low', frequency_segment: 'repeat', version: '4', some_future_field: 'x',
    });
    const res = await get(c, '/customers/77/clv?as_of=2024-02-02T00:00:00.000001Z');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      customer_id: '77', customer_key: null, customer_segment: null, total_orders: 2, total_items: 5,
      total_revenue: '10.50', avg_order_value: '5.25', first_order_date: '2024-01-01T00:00:00.000001Z',
      last_order_date: '2024-02-01T00:00:00.000001Z', customer_lifetime_days: 31, value_segment: 'low',
      frequency_segment: 'repeat', version: '4', as_of: '2024-02-02T00:00:00.000001Z', days_since_last_order: 1,
      recency_segment: 'active', source: 'redis',
    });
  });

  it('answers from Postgres when the Redis entry is unreadable, and counts it as a Redis error', async () => {
    const c = await setup();
    for (const id of ['31', '32', '33', '34']) await insertClv(c, { customer_id: id, total_revenue: '99.99' });
    await fillRedis(c);
    const key = (id: string) => clvKey(`${c.id}:`, id);
    await c.redis.hset(key('31'), 'total_revenue', '1e3'); // not exact decimal text
    await c.redis.hset(key('32'), 'last_order_date', '2024-02-30T00:00:00.000000Z'); // canonical layout, no such day
    await c.redis.hset(key('33'), 'customer_id', '3'); // names another customer
    await c.redis.hdel(key('34'), 'value_segment'); // a required field missing

    for (const id of ['31', '32', '33', '34']) {
      const res = await get(c, `/customers/${id}/clv`);
      expect(res.status, id).toBe(200);
      expect(res.body, id).toMatchObject({ customer_id: id, total_revenue: '99.99', source: 'postgres' });
    }
    const m = (await get(c, '/metrics')).body as string;
    expect(m).toMatch(/api_clv_redis_lookups_total\{result="error"\} 4\b/);
    expect(m).toMatch(/api_clv_postgres_fallbacks_total\{reason="redis_error"\} 4\b/);
  });

  it('answers from Postgres within the Redis timeout when Redis accepts commands but never answers', async () => {
    const c = await setup({ REDIS_URL: `redis://127.0.0.1:${await stalledRedis()}`, API_REDIS_TIMEOUT_MS: '100' });
    for (const id of ['41', '42', '43']) await insertClv(c, { customer_id: id, total_revenue: '41.41' });

    // Were the timeout lost, these would hang until the test's own timeout fails it.
    const answers = await Promise.all(['41', '42', '43'].map((id) => get(c, `/customers/${id}/clv`)));
    for (const [k, id] of ['41', '42', '43'].entries()) {
      expect(answers[k]!.status, id).toBe(200);
      expect(answers[k]!.body, id).toMatchObject({ customer_id: id, total_revenue: '41.41', source: 'postgres' });
    }
    const m = (await get(c, '/metrics')).body as string;
    expect(m).toMatch(/api_clv_redis_lookups_total\{result="error"\} 3\b/);
  });
});
