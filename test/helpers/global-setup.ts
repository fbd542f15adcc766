import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadTestStack, type TestStack } from './stack-env.ts';

/**
 * vitest globalSetup of the integration project: before any test file runs,
 * every server of the local stack must answer a real request. Integration
 * tests never mock these, so a missing server is reported once, clearly,
 * instead of as a timeout in every test.
 */

const TIMEOUT_MS = 5_000;
const REPO = fileURLToPath(new URL('../..', import.meta.url));

function redact(u: string): string {
  try {
    const parsed = new URL(u);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return u;
  }
}

async function withTimeout<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function checkPostgres(name: string, connectionString: string, needLogical: boolean): Promise<void> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: TIMEOUT_MS });
  try {
    await client.connect();
    const { rows } = await client.query<{ wal_level: string }>('show wal_level');
    if (needLogical && rows[0]?.wal_level !== 'logical') {
      throw new Error(`wal_level is ${rows[0]?.wal_level}, logical decoding needs 'logical'`);
    }
  } catch (err) {
    throw new Error(`postgres (${name}) at ${redact(connectionString)}: ${(err as Error).message}`);
  } finally {
    await client.end().catch(() => {});
  }
}

async function checkRedis(redisUrl: string): Promise<void> {
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    connectTimeout: TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const pong = await redis.ping();
    if (pong !== 'PONG') throw new Error(`PING answered ${pong}`);
  } catch (err) {
    throw new Error(`redis at ${redact(redisUrl)}: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

async function checkKafka(brokers: string[]): Promise<void> {
  const kafka = new kafkajs.Kafka({
    clientId: 'integration-global-setup',
    brokers,
    logLevel: kafkajs.logLevel.NOTHING,
    connectionTimeout: TIMEOUT_MS,
    requestTimeout: TIMEOUT_MS,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await withTimeout('describeCluster', (async () => {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length === 0) throw new Error('no brokers in cluster metadata');
    })());
  } catch (err) {
    throw new Error(`kafka at ${brokers.join(',')}: ${(err as Error).message}`);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

async function checkRegistry(registryUrl: string): Promise<void> {
  const target = `${registryUrl.replace(/\/+$/, '')}/subjects`;
  try {
    const res = await fetch(target, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`GET /subjects answered ${res.status}`);
  } catch (err) {
    // fetch() hides the socket error ("fetch failed") in its cause.
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new Error(`schema registry at ${registryUrl}: ${(err as Error).message}${cause ? ` (${cause})` : ''}`);
  }
}

export async function checkStack(stack: TestStack, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const checks: Promise<void>[] = [
    checkPostgres('source', stack.sourceUrl, true),
    checkPostgres('warehouse', stack.warehouseUrl, false),
    checkPostgres('registry', stack.registryDatabaseUrl, false),
    checkRedis(stack.redisUrl),
    checkKafka(stack.kafkaBrokers),
  ];
  // Like scripts/stack.sh: until src/registry/main.ts exists there is no
  // registry to expect, unless one is configured explicitly.
  if (env.SCHEMA_REGISTRY_URL || existsSync(`${REPO}src/registry/main.ts`)) {
    checks.push(checkRegistry(stack.registryUrl));
  }
  const results = await Promise.allSettled(checks);
  return results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message ?? r.reason)] : []));
}

export default async function setup(): Promise<void> {
  const stack = loadTestStack();
  const failures = await checkStack(stack);
  if (failures.length > 0) {
    throw new Error(
      `The local stack is not answering:\n  - ${failures.join('\n  - ')}\n` +
        'Start it with `npm run stack:up` (see `npm run stack:status` and docs/stack.md).',
    );
  }
}
