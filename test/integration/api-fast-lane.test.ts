import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { loadApiConfig } from '../../src/api/config.ts';
import { ApiService } from '../../src/api/server.ts';
import { clvKey } from '../../src/sinks/redis/clv-redis.ts';
import { capturingLogger, closedPort, fillRedis, insertClv, setup, stopApis, type Ctx } from '../helpers/api-harness.ts';
import { stackEnv } from '../helpers/stack-env.ts';

/**
 * The fast lane (src/api/fast-lane.ts) against the Fastify route it stands
 * in front of: two API services over the same Postgres schema and Redis
 * prefix, one with the lane and one with API_FAST_LANE=false, asked the same
 * requests; the raw HTTP answers (status line, headers in order, body) must
 * be the same bytes, Date header aside. Each comparison also checks the lane
 * did answer, or the test would compare Fastify with itself.
 */

const TOKEN = 'test-token-0a9b8c7d6e5f4a3b';

const extra: ApiService[] = [];
afterEach(async () => {
  for (const s of extra.splice(0)) await s.stop();
  await stopApis();
});

/** One GET over a fresh connection; the raw answer without its Date line. */
function rawGet(url: string, path: string, headers: Record<string, string> = {}): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    let buf = Buffer.alloc(0);
    sock.on('error', reject);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.toString('latin1', 0, end);
      const len = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? NaN);
      if (buf.length < end + 4 + len) return;
      sock.destroy();
      resolve(buf.toString('utf8', 0, end + 4 + len).replace(/\r\nDate: [^\r]*/, ''));
    });
    const extraHeaders = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    sock.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n${extraHeaders}\r\n`);
  });
}

/** The same data served by a second service without the lane (and, optionally, other settings). */
async function twin(c: Ctx, env: Record<string, string>, fastLane: boolean): Promise<ApiService> {
  const s = new ApiService(loadApiConfig({
    WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, REDIS_URL: stackEnv.redisUrl, API_PORT: '0',
    ANALYTICS_SCHEMA: c.an, REDIS_KEY_PREFIX: `${c.id}:`, API_FAST_LANE: String(fastLane), ...env,
  }), capturingLogger([]));
  await s.start(new AbortController().signal);
  extra.push(s);
  return s;
}

/**
 * Asks both services each path; expects equal bytes and the lane to have
 * answered `laned` of them. as_of of "now" is masked: the two answers are
 * made in different milliseconds.
 */
async function compare(lane: ApiService, fastify: ApiService, paths: string[], laned: number, headers: Record<string, string> = {}): Promise<string[]> {
  expect(lane.fastLaneServed).toBeDefined();
  expect(fastify.fastLaneServed).toBeUndefined();
  const before = lane.fastLaneServed!;
  const answers: string[] = [];
  const mask = (s: string) => s.replace(/"as_of":"[^"]*"/g, '"as_of":"…"');
  for (const p of paths) {
    const a = await rawGet(lane.url, p, headers);
    const b = await rawGet(fastify.url, p, headers);
    const now = !p.includes('as_of=');
    expect(now ? mask(a) : a, p).toBe(now ? mask(b) : b);
    answers.push(a);
  }
  expect(lane.fastLaneServed! - before).toBe(laned);
  return answers;
}

const status = (raw: string) => raw.slice(0, raw.indexOf('\r\n'));
const body = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));

describe('fast lane and Fastify route answer the same bytes', () => {
  it('for a hit, a miss answered from Postgres, an unreadable entry, an unknown customer, bad ids and bad as_of', async () => {
    const c = await setup();
    for (const id of ['42', '43', '44']) await insertClv(c, { customer_id: id, version: Number(id) });
    await fillRedis(c);
    await c.redis.del(clvKey(`${c.id}:`, '43'));
    await c.redis.hset(clvKey(`${c.id}:`, '44'), 'total_revenue', '1e3');
    // The customer_key and segment as odd strings, so escaping is compared too.
    await c.redis.hset(clvKey(`${c.id}:`, '42'), 'customer_segment', 'gold "vip" \\ é\u0001');
    const fastify = await twin(c, {}, false);

    const q = '?as_of=2024-03-01T00:00:00Z';
    const lanePaths = [
      `/customers/42/clv${q}`, '/customers/42/clv', '/customers/042/clv/', `/customers/43/clv${q}`, `/customers/44/clv${q}`,
      `/customers/999/clv${q}`, '/customers/9223372036854775808/clv', '/customers/12345678901234567890123456/clv',
      '/customers/42/clv?as_of=yesterday', '/customers/42/clv?as_of=', '/customers/42/clv?as_of=2024-02-30',
      '/customers/42/clv?as_of=2024-05-01T00:00:00', '/customers/9223372036854775807/clv',
    ];
    const answers = await compare(c.api, fastify, lanePaths, lanePaths.length);
    expect(answers.map(status)).toEqual([
      'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK',
      'HTTP/1.1 404 Not Found', 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 400 Bad Request',
      'HTTP/1.1 400 Bad Request', 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 404 Not Found',
    ]);
    expect(body(answers[0]!)).toMatchObject({ customer_id: '42', source: 'redis', customer_segment: 'gold "vip" \\ é\u0001', days_since_last_order: 59 });
    expect(body(answers[3]!)).toMatchObject({ customer_id: '43', source: 'postgres' });
    expect(body(answers[4]!)).toMatchObject({ customer_id: '44', source: 'postgres', total_revenue: '12345678901234.10' });
    expect(body(answers[6]!)).toEqual({ error: expect.stringContaining('64-bit'), code: 'INVALID_CUSTOMER_ID' });

    // What the lane leaves to Fastify is answered by Fastify on both services.
    const fastifyPaths = ['/customers/abc/clv', '/customers/%34%32/clv', '/customers/42/clv?as_of=2024-03-01T01:00:00%2B01:00', '/customers/42/clv?as_of=a&as_of=b', '/customers/top?limit=2', '/nowhere'];
    const passed = await compare(c.api, fastify, fastifyPaths, 0);
    expect(passed.map(status)).toEqual(['HTTP/1.1 400 Bad Request', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 200 OK', 'HTTP/1.1 404 Not Found']);

    // Both count the route's requests in the same series.
    const series = async (s: ApiService) => ((await (await fetch(`${s.url}/metrics`)).text()).match(/^api_http_requests_total\{[^}]*route="\/customers\/:id\/clv"[^}]*\} \d+$/gm) ?? []).sort();
    const laneSeries = await series(c.api);
    expect(laneSeries).toEqual(await series(fastify));
    expect(laneSeries).toContain('api_http_requests_total{method="GET",route="/customers/:id/clv",status="200"} 7');
  });

  it('for lookups answered from Postgres with Redis down, and for 503s with Postgres down', async () => {
    const c = await setup();
    await insertClv(c, { customer_id: '5', total_revenue: '250.05' });
    await fillRedis(c);
    const noRedis = { REDIS_URL: `redis://127.0.0.1:${await closedPort()}` };
    const redisDown = [await twin(c, noRedis, true), await twin(c, noRedis, false)] as const;
    const a = await compare(redisDown[0], redisDown[1], ['/customers/5/clv?as_of=2024-03-01', '/customers/6/clv?as_of=2024-03-01'], 2);
    expect(body(a[0]!)).toMatchObject({ customer_id: '5', total_revenue: '250.05', source: 'postgres' });
    expect(status(a[1]!)).toBe('HTTP/1.1 404 Not Found');

    const noPg = { WAREHOUSE_DATABASE_URL: `postgres://postgres@127.0.0.1:${await closedPort()}/warehouse` };
    const pgDown = [await twin(c, noPg, true), await twin(c, noPg, false)] as const;
    const b = await compare(pgDown[0], pgDown[1], ['/customers/5/clv?as_of=2024-03-01', '/customers/6/clv?as_of=2024-03-01'], 2);
    expect(body(b[0]!)).toMatchObject({ customer_id: '5', source: 'redis' });
    expect(status(b[1]!)).toBe('HTTP/1.1 503 Service Unavailable');
    expect(body(b[1]!)).toEqual({ error: expect.any(String), code: 'WAREHOUSE_UNAVAILABLE' });
  });

  it('for auth failures and successes with a bearer token', async () => {
    const c = await setup({ API_AUTH_TOKEN: TOKEN });
    await insertClv(c, { customer_id: '8' });
    await fillRedis(c);
    const fastify = await twin(c, { API_AUTH_TOKEN: TOKEN }, false);
    const p = ['/customers/8/clv?as_of=2024-03-01', '/customers/abc/clv', '/customers/9/clv?as_of=2024-03-01'];
    const wrong: Record<string, string>[] = [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: TOKEN }];
    for (const headers of wrong) {
      const refused = await compare(c.api, fastify, p, 2, headers);
      for (const r of refused) {
        expect(status(r)).toBe('HTTP/1.1 401 Unauthorized');
        expect(r).toContain('\r\nwww-authenticate: Bearer\r\n');
        expect(body(r)).toEqual({ error: expect.any(String), code: 'UNAUTHORIZED' });
      }
    }
    const ok = await compare(c.api, fastify, p, 2, { authorization: `Bearer ${TOKEN}` });
    expect(ok.map(status)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 404 Not Found']);
  });
});
