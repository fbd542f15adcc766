import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import pg from 'pg';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../bench/capture/harness.ts';
import { loadRegistryConfig } from '../../src/registry/config.ts';
import { RegistryService } from '../../src/registry/server.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * /healthz, /readyz and /metrics of the processes the stall test does not
 * run: the clickstream consumer group (child process, own group, topic,
 * schemas, a free port) and the schema registry (in-process, port 0).
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));

describe('health endpoints of the clickstream consumer and the registry', () => {
  const id = uniqueId('health_ep');
  let child: ChildProcess | undefined;
  let registry: RegistryService | undefined;
  const schemas = { staging: `${id}_stg`, analytics: `${id}_an`, meta: `${id}_meta` };
  const topic = `${id}.clickstream`;

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => { child!.once('exit', r); setTimeout(r, 15_000); });
    }
    await registry?.stop();
    const wh = new pg.Client({ connectionString: stackEnv.warehouseUrl });
    await wh.connect();
    await wh.query(`DROP SCHEMA IF EXISTS "${schemas.staging}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${schemas.meta}" CASCADE`);
    await wh.end();
    const reg = new pg.Client({ connectionString: stackEnv.registryDatabaseUrl });
    await reg.connect();
    await reg.query(`DROP SCHEMA IF EXISTS "${id}_reg" CASCADE`);
    await reg.end();
    const admin = new kafkajs.Kafka({ brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(`${id}.`));
    if (mine.length) await admin.deleteTopics({ topics: mine }).catch(() => {});
    await admin.disconnect();
  });

  it('clickstream consumer: alive at once, ready once joined, metrics with its group', async () => {
    child = spawn(process.execPath, ['--import', 'tsx', 'consumers/clickstream/main.ts'], {
      cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env, WAREHOUSE_DATABASE_URL: stackEnv.warehouseUrl, KAFKA_BROKERS: stackEnv.kafkaBrokers.join(','), SCHEMA_REGISTRY_URL: stackEnv.registryUrl,
        STAGING_SCHEMA: schemas.staging, ANALYTICS_SCHEMA: schemas.analytics, META_SCHEMA: schemas.meta,
        CLICKSTREAM_TOPIC: topic, CLICKSTREAM_GROUP: `${id}_click`, CLICKSTREAM_HEALTH_PORT: '0', CLICKSTREAM_SESSION_TIMEOUT_MS: '6000', LOG_LEVEL: 'info',
      },
    });
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child!.stdout! }).on('line', (l) => {
        try {
          const j = JSON.parse(l) as { msg?: string; port?: number };
          if (j.msg === 'health listening' && typeof j.port === 'number') resolve(j.port);
        } catch { /* not JSON */ }
      });
      child!.once('exit', (c) => reject(new Error(`clickstream consumer exited ${c}`)));
    });
    const get = async (p: string) => { const r = await fetch(`http://127.0.0.1:${port}${p}`); return { status: r.status, text: await r.text() }; };
    expect((await get('/healthz')).status).toBe(200);
    const ready = await waitFor('clickstream ready', async () => { const r = await get('/readyz'); return r.status === 200 ? r : null; }, 60_000);
    const body = JSON.parse(ready.text) as { status: string; process: string; conditions: Record<string, { healthy: boolean; detail?: string }> };
    expect(body.status).toBe('ready');
    expect(body.process).toBe('consumer-clickstream');
    expect(body.conditions['kafka-group']).toMatchObject({ healthy: true });
    expect(body.conditions['kafka-group']!.detail).toMatch(/partition\(s\) assigned/);
    expect(Object.keys(body.conditions)).toEqual(expect.arrayContaining(['kafka-group', 'started', 'watchdog']));
    const m = await waitFor('lag gauge', async () => { const r = await get('/metrics'); return /consumer_lag_messages\{/.test(r.text) ? r.text : null; }, 20_000);
    expect(m).toMatch(new RegExp(`consumer_lag_messages\\{group="${id}_click",topic="${topic.replace(/\./g, '\\.')}",partition="0"\\} 0`));
    expect(m).toMatch(/health_condition\{condition="kafka-group"\} 1/);
    expect(m).toMatch(/^process_resident_memory_bytes \d+/m);
    expect((await get('/nowhere')).status).toBe(404);
  });

  it('registry: /healthz, /readyz and request metrics beside the Confluent routes', async () => {
    registry = new RegistryService(loadRegistryConfig({ ...process.env, REGISTRY_DATABASE_URL: stackEnv.registryDatabaseUrl, REGISTRY_SCHEMA: `${id}_reg`, REGISTRY_PORT: '0' }), pino({ level: 'silent' }));
    await registry.start(new AbortController().signal);
    expect((await fetch(`${registry.url}/healthz`)).status).toBe(200);
    const r = await fetch(`${registry.url}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ready', conditions: { store: { healthy: true } } });
    expect((await fetch(`${registry.url}/subjects`)).status).toBe(200);
    const m = await (await fetch(`${registry.url}/metrics`)).text();
    expect(m).toMatch(/registry_http_requests_total\{method="GET",route="\/subjects",status="200"\} 1/);
    expect(m).toMatch(/registry_http_request_duration_seconds_count\{method="GET",route="\/subjects",status="200"\} 1/);
  });
});
