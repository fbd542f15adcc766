import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/migrations/runner.ts';
import { httpsGet, lastLine, ProcessLogs } from '../helpers/secure-pipeline.ts';
import { freePortInRange, makePki, startSecureKafka, startSecurePostgres, startSecureRedis, type Pki } from '../helpers/secure-servers.ts';

/**
 * The pipeline with every hop secured (docs/security.md), on throw-away
 * servers: Kafka SASL_SSL with SCRAM users, our registry over https with
 * basic auth, Postgres taking only TLS (verify-full) with least-privilege
 * roles (a capture role with REPLICATION and SELECT on the published tables
 * only), Redis over TLS with an ACL user confined to the CLV key prefix,
 * the API behind a bearer token. Passwords come from *_FILE settings.
 * capture → Kafka → warehouse → Redis → API must deliver a customer's CLV;
 * a wrong credential at each hop must end start-up with one line naming
 * the setting; no process may print any secret it was given.
 */
const secret = (n = 12) => randomBytes(n).toString('hex');
const S = {
  capturePg: secret(), warehousePg: secret(), registryPg: secret(),
  captureKafka: secret(), warehouseKafka: secret(), redis: secret(), registryUser: secret(), apiToken: secret(16),
};
const WRONG = { kafka: secret(), pg: secret(), redis: secret(), registry: secret() };
const PREFIX = 'sec1:';

describe('end to end with TLS, SASL and least-privilege roles on every hop', () => {
  const logs = new ProcessLogs();
  const stops: Array<() => Promise<void>> = [];
  let root: string;
  let pki: Pki;
  let admin: (db: string) => string;
  let base: NodeJS.ProcessEnv;
  let captureEnv: NodeJS.ProcessEnv;
  let consumerEnv: NodeJS.ProcessEnv;
  let apiEnv: NodeJS.ProcessEnv;
  let apiPort: number;
  let redisPort: number;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'secure-e2e-'));
    chmodSync(root, 0o755);
    pki = makePki(join(root, 'pki'));
    const ca = pki.caFile;
    const [pgs, redis, kafka] = await Promise.all([
      startSecurePostgres(pki, join(root, 'pg')),
      startSecureRedis(pki, join(root, 'redis'), [{
        name: 'clv', password: S.redis,
        // The CLV key prefix and the commands the consumers, the API and `redis rebuild` use; nothing else.
        rules: `resetchannels ~${PREFIX}* -@all +@connection +info +get +set +del +exists +type +hget +hgetall +hmget +hset +scan +evalsha +eval +script|load +script|exists +multi +exec`,
      }]),
      startSecureKafka(pki, join(root, 'kafka'), [
        { name: 'capture', password: S.captureKafka, mechanism: 'SCRAM-SHA-512' },
        { name: 'warehouse', password: S.warehouseKafka, mechanism: 'SCRAM-SHA-256' },
      ]),
    ]);
    stops.push(pgs.stop, redis.stop, kafka.stop);
    redisPort = redis.port;
    admin = pgs.adminUrl;

    // What an administrator runs once (docs/security.md, "Least privilege").
    const su = new pg.Client({ connectionString: admin('postgres') });
    await su.connect();
    for (const db of ['shop', 'warehouse', 'registry']) await su.query(`CREATE DATABASE ${db}`);
    await su.query(`CREATE ROLE capture LOGIN REPLICATION PASSWORD '${S.capturePg}';
      CREATE ROLE warehouse LOGIN PASSWORD '${S.warehousePg}';
      CREATE ROLE registry LOGIN PASSWORD '${S.registryPg}';
      REVOKE CONNECT ON DATABASE shop, warehouse, registry FROM PUBLIC;
      GRANT CONNECT ON DATABASE shop TO capture; GRANT CONNECT ON DATABASE warehouse TO warehouse; GRANT CONNECT ON DATABASE registry TO registry;
      GRANT CREATE ON DATABASE warehouse TO warehouse; GRANT CREATE ON DATABASE registry TO registry;`);
    await su.end();
    const shop = new pg.Pool({ connectionString: admin('shop'), max: 1 });
    await shop.query('CREATE SCHEMA cdc_meta AUTHORIZATION capture');
    // The source migrations create the tables and the publication shop_cdc, as the administrator.
    await migrate(shop, 'source');
    await shop.query(`GRANT USAGE ON SCHEMA public TO capture; GRANT SELECT ON public.customers, public.products, public.orders TO capture;
      INSERT INTO customers (customer_id, email, first_name, last_name, customer_segment) VALUES (1, 'ann@x.io', 'Ann', 'Lee', 'gold'), (2, 'bo@x.io', 'Bo', 'Ng', 'silver');
      INSERT INTO products (product_id, product_name, category, price, rating) VALUES (10, 'Book', 'books', 19.99, 4.5), (11, 'Game', 'games', 100.00, NULL);`);
    await shop.end();

    const files = (name: string, value: string) => { const f = join(root, name); writeFileSync(f, `${value}\n`, { mode: 0o600 }); return f; };
    const pgUrl = (user: string, pw: string, db: string) => `postgres://${user}:${pw}@127.0.0.1:${pgs.port}/${db}?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`;
    const registryPort = await freePortInRange();
    apiPort = await freePortInRange();
    base = {
      PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'debug', TOPIC_PREFIX: 'shop',
      KAFKA_BROKERS: kafka.brokers.join(','),
      SCHEMA_REGISTRY_URL: `https://127.0.0.1:${registryPort}`, SCHEMA_REGISTRY_CA_FILE: ca,
      SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE: files('registry-user-info', `shopstream:${S.registryUser}`),
      REDIS_URL: `rediss://127.0.0.1:${redis.port}`, REDIS_TLS_CA_FILE: ca, REDIS_USERNAME: 'clv', REDIS_PASSWORD_FILE: files('redis-password', S.redis),
      REDIS_KEY_PREFIX: PREFIX,
      // Every process reads the stack settings; none of these may point at the shared stack.
      SOURCE_DATABASE_URL: pgUrl('capture', S.capturePg, 'shop'), WAREHOUSE_DATABASE_URL: pgUrl('warehouse', S.warehousePg, 'warehouse'),
      CAPTURE_METRICS_PORT: '-1', CONSUMER_HEALTH_PORT: '-1', CLICKSTREAM_HEALTH_PORT: '-1',
    };
    captureEnv = {
      ...base, SOURCE_DATABASE_URL: undefined, SOURCE_DATABASE_URL_FILE: files('source-url', pgUrl('capture', S.capturePg, 'shop')),
      KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SSL_CA_FILE: ca, KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512', KAFKA_SASL_USERNAME: 'capture', KAFKA_SASL_PASSWORD_FILE: files('capture-kafka', S.captureKafka),
    };
    consumerEnv = { ...base, KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SSL_CA_FILE: ca, KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256', KAFKA_SASL_USERNAME: 'warehouse', KAFKA_SASL_PASSWORD: S.warehouseKafka };
    apiEnv = { ...consumerEnv, API_PORT: String(apiPort), API_AUTH_TOKEN_FILE: files('api-token', S.apiToken) };

    // The capture role lacks SELECT on order_items: migrate says which SQL an administrator must run.
    const gap = await logs.run('migrate-capture-role', ['migrate', 'source'], captureEnv);
    expect(gap.code, gap.stderr).toBe(1);
    expect(gap.stderr).toContain('GRANT SELECT ON "public"."order_items" TO "capture";');
    expect(lastLine(gap)).toMatch(/the role capture \(SOURCE_DATABASE_URL\) .*\[MIGRATION_FAILED\]/);
    const shop2 = new pg.Client({ connectionString: admin('shop') });
    await shop2.connect();
    await shop2.query('GRANT SELECT ON public.order_items TO capture');
    await shop2.end();

    const wh = await logs.run('migrate-warehouse', ['migrate', 'warehouse'], consumerEnv);
    expect(wh.code, wh.stderr).toBe(0);
    logs.start('registry', ['registry'], {
      ...base, REGISTRY_PORT: String(registryPort), REGISTRY_DATABASE_URL: pgUrl('registry', S.registryPg, 'registry'),
      REGISTRY_TLS_CERT_FILE: pki.certFile, REGISTRY_TLS_KEY_FILE: pki.keyFile,
      REGISTRY_BASIC_AUTH_USER_INFO_FILE: files('registry-server-user-info', `shopstream:${S.registryUser}`),
    });
    await waitFor('registry over https', async () => (await httpsGet(`https://127.0.0.1:${registryPort}/readyz`, readFileSync(ca)).catch(() => ({ status: 0 }))).status === 200, 60_000, () => `\n${logs.output('registry').slice(-3000)}`);
    const anonymous = await httpsGet(`https://127.0.0.1:${registryPort}/subjects`, readFileSync(ca));
    expect(anonymous.status).toBe(401);
  }, 240_000);

  afterAll(async () => {
    await logs.stopAll();
    for (const stop of stops.reverse()) await stop().catch(() => {});
    if (root) rmSync(root, { recursive: true, force: true });
  }, 60_000);

  it('delivers a customer\'s CLV from the source through Kafka, the warehouse and Redis to the API', async () => {
    logs.start('capture', ['capture'], captureEnv);
    logs.start('consumers', ['consume', 'warehouse'], consumerEnv);
    logs.start('api', ['api'], apiEnv);
    const shop = new pg.Client({ connectionString: admin('shop') });
    await shop.connect();
    await shop.query(`BEGIN;
      INSERT INTO orders (order_id, customer_id, order_date, status) VALUES (100, 1, '2024-05-01 10:00:00+00', 'shipped');
      INSERT INTO order_items VALUES (100, 10, 3, 19.99, 0.15), (100, 11, 1, 0.05, 0.50);
      COMMIT`);
    await shop.end();
    const clv = await waitFor('CLV of customer 1 from Redis via the API', async () => {
      const res = await fetch(`http://127.0.0.1:${apiPort}/customers/1/clv`, { headers: { authorization: `Bearer ${S.apiToken}` } }).catch(() => null);
      if (res?.status !== 200) return null;
      const body = await res.json() as { total_revenue: string; source: string };
      return body.source === 'redis' ? body : null;
    }, 120_000, () => `\n--- capture\n${logs.output('capture').slice(-3000)}\n--- consumers\n${logs.output('consumers').slice(-3000)}\n--- api\n${logs.output('api').slice(-1500)}`);
    expect(clv.total_revenue).toBe('51.00');
    expect((await fetch(`http://127.0.0.1:${apiPort}/customers/1/clv`)).status).toBe(401);

    // The ACL user reaches its prefix and nothing else.
    const r = new Redis(`rediss://127.0.0.1:${redisPort}`, { username: 'clv', password: S.redis, tls: { ca: readFileSync(pki.caFile) }, maxRetriesPerRequest: 1 });
    try {
      expect(await r.hget(`${PREFIX}clv:1`, 'total_revenue')).toBe('51.00');
      await expect(r.set('outside', '1')).rejects.toThrow(/NOPERM/);
    } finally {
      r.disconnect();
    }
    const rebuild = await logs.run('redis-rebuild', ['redis', 'rebuild'], { ...consumerEnv });
    expect(rebuild.code, rebuild.stderr).toBe(0);
    // status sees the secured Kafka and Postgres; whatever it reports, it must not print a secret (checked below).
    await logs.run('status', ['status', '--json'], { ...captureEnv, API_AUTH_TOKEN_FILE: apiEnv.API_AUTH_TOKEN_FILE });
    // Their shutdown lines are part of what is searched for secrets; stopped now, they leave the cores to the next test.
    await logs.stopAll(['capture', 'consumers', 'api']);
  }, 180_000);

  it('stops start-up with one line naming the setting for a wrong credential at each hop', async () => {
    const runs = await Promise.all([
      logs.run('wrong-kafka', ['capture'], { ...captureEnv, KAFKA_SASL_PASSWORD_FILE: undefined, KAFKA_SASL_PASSWORD: WRONG.kafka }),
      logs.run('wrong-pg-ca', ['migrate', 'warehouse'], { ...consumerEnv, WAREHOUSE_DATABASE_URL: (consumerEnv.WAREHOUSE_DATABASE_URL as string).replace(/sslrootcert=[^&]+/, `sslrootcert=${encodeURIComponent(pki.certFile)}`) }),
      logs.run('wrong-pg', ['consume', 'warehouse'], { ...consumerEnv, WAREHOUSE_DATABASE_URL: (consumerEnv.WAREHOUSE_DATABASE_URL as string).replace(S.warehousePg, WRONG.pg) }),
      logs.run('wrong-redis', ['redis', 'rebuild'], { ...consumerEnv, REDIS_PASSWORD_FILE: undefined, REDIS_PASSWORD: WRONG.redis }),
      logs.run('wrong-registry', ['capture'], {
        ...captureEnv, CAPTURE_SLOT: 'wrong_registry', SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE: undefined, SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: `shopstream:${WRONG.registry}`,
      }),
      logs.run('no-kafka-ca', ['consume', 'warehouse'], { ...consumerEnv, KAFKA_SSL_CA_FILE: undefined }),
    ]);
    const [kafka, pgCa, pgPw, redis, registry, kafkaCa] = runs;
    const expectOneLine = (r: (typeof runs)[number], setting: RegExp) => {
      const out = `${r.stderr.slice(-2500)}\n--- stdout\n${r.stdout.slice(-2500)}`;
      expect(r.code, out).not.toBe(0);
      expect(r.code, out).not.toBeNull();
      expect(lastLine(r)).toMatch(setting);
      expect(lastLine(r)).toMatch(/AUTH_FAILED/);
    };
    expectOneLine(kafka, /KAFKA_SASL_PASSWORD/);
    expectOneLine(pgCa, /sslrootcert.*WAREHOUSE_DATABASE_URL|WAREHOUSE_DATABASE_URL.*sslrootcert/);
    expectOneLine(pgPw, /WAREHOUSE_DATABASE_URL/);
    expectOneLine(redis, /REDIS_PASSWORD/);
    expectOneLine(registry, /SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO/);
    expectOneLine(kafkaCa, /KAFKA_SSL_CA_FILE/);
    const shop = new pg.Client({ connectionString: admin('shop') });
    await shop.connect();
    await shop.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'wrong_registry' AND NOT active").catch(() => {});
    await shop.end();
    const names = ['kafka', 'pg-ca', 'pg-password', 'redis', 'registry', 'kafka-ca'];
    process.stderr.write(`[secure-e2e] wrong-credential runs:\n${runs.map((r, i) => `  ${names[i]} ${(r.ms / 1000).toFixed(1)} s, exit ${r.code}: ${lastLine(r)}`).join('\n')}\n`);
  }, 200_000);

  it('prints no secret in any process\'s output', () => {
    const all = logs.all();
    expect(all.length).toBeGreaterThanOrEqual(12);
    expect(all.find((o) => o.name === 'capture')!.text.length).toBeGreaterThan(0);
    const secrets = [...Object.values(S), ...Object.values(WRONG)];
    for (const { name, text } of all) {
      for (const s of secrets) expect(text.includes(s), `${name} printed a secret`).toBe(false);
      // Nor the base64 of a basic-auth header.
      expect(text.includes(Buffer.from(`shopstream:${S.registryUser}`).toString('base64')), `${name} printed the registry's basic-auth header`).toBe(false);
    }
  });
});

async function waitFor<T>(what: string, probe: () => Promise<T | null | false | undefined>, timeoutMs: number, context: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
