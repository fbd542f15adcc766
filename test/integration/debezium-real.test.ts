import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import kafkajs from 'kafkajs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { consumeUntil, createHarness, startInProcess, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { createRegistry } from '../../src/consumer/avro.ts';
import { MessageDecoder } from '../../src/consumer/decode.ts';
import { waitCaughtUp } from '../../src/consumer/lag.ts';
import { TABLES, TABLE_NAMES, type TableName } from '../../src/consumer/tables.ts';
import { WarehouseConsumer } from '../../consumers/warehouse/consumer.ts';
import { createLogger } from '../../src/logger.ts';
import { migrate, warehouseSchemaNames } from '../../src/migrations/runner.ts';
import { diffDerivedTables } from '../../consumers/warehouse/batch-recompute.ts';
import { createWarehousePool, isoSql, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { stagingRows } from '../../consumers/warehouse/staging-apply.ts';
import { canonicalRecords, diffColumnSchemas, diffRecords, summarise, type CanonicalRecord } from '../helpers/debezium-compare.ts';
import { debeziumClasspath, freePort, startDebezium, stopDebezium } from '../helpers/debezium.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';
import { allowedDifference, DEBEZIUM_ALLOWED_DIFFERENCES, runWorkload } from '../helpers/debezium-workload.ts';

/**
 * Real Debezium 3.0.8 (PostgreSQL connector, Kafka Connect standalone,
 * JsonConverter) beside our capture on one source schema, each with its own
 * slot created before the workload so both see the same changes:
 * - the warehouse consumer reads Debezium's JSON topics (schemas on, off,
 *   and decimal.handling.mode string and double) and ends with staging equal
 *   to the source and the derived tables equal to the batch recomputation;
 * - our records equal Debezium's field by field, except the documented
 *   differences (docs/encodings.md "Differences from Debezium").
 * Opt-in (DEBEZIUM_TESTS=1; .ci/run sets it): it resolves Debezium from
 * Maven Central and starts a JVM.
 */
const enabled = process.env.DEBEZIUM_TESTS === '1';

describe.runIf(enabled)('real Debezium beside our capture', () => {
  let h: Harness | undefined;
  let java: ChildProcess | undefined;
  let wh: pg.Pool | undefined;
  const created: WarehouseSchemas[] = [];
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });
  const stops: Array<() => Promise<void>> = [];
  const stateDir = mkdtempSync(`${tmpdir()}/dbz-`);

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await stopDebezium(java);
    if (wh) {
      for (const s of created) await wh.query(`DROP SCHEMA IF EXISTS "${s.staging}" CASCADE; DROP SCHEMA IF EXISTS "${s.analytics}" CASCADE; DROP SCHEMA IF EXISTS "${s.meta}" CASCADE`);
      await wh.end();
    }
    if (h) {
      for (let i = 0; i < 60; i++) {
        const { rows } = await h.pool.query<{ slot_name: string; active: boolean }>('SELECT slot_name, active FROM pg_replication_slots WHERE slot_name LIKE $1', [`${h.id}_dbz%`]);
        for (const r of rows.filter((x) => !x.active)) await h.pool.query('SELECT pg_drop_replication_slot($1)', [r.slot_name]).catch(() => {});
        if (rows.every((x) => !x.active)) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      await h.pool.query(`DROP PUBLICATION IF EXISTS ${h.id}_dbz`);
      await h.cleanup();
    }
    redis.disconnect();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('consumes Debezium JSON exactly and matches our capture field by field', async () => {
    const classpath = debeziumClasspath();
    h = await createHarness(uniqueId('dbz'));
    const s = h.id;
    const src = h.pool;
    // Debezium's defaults with schemas on and off, plus decimal.handling.mode string (schemas off) and double (schemas on).
    const sides = { on: `${s}_dbzon`, off: `${s}_dbzoff`, str: `${s}_dbzstr`, dbl: `${s}_dbzdbl` } as const;
    const modes: Record<keyof typeof sides, { schemasEnable: boolean; decimal?: string }> = {
      on: { schemasEnable: true }, off: { schemasEnable: false }, str: { schemasEnable: false, decimal: 'string' }, dbl: { schemasEnable: true, decimal: 'double' },
    };
    await src.query(`CREATE PUBLICATION ${s}_dbz FOR TABLE ${TABLE_NAMES.map((t) => `${s}.${t}`).join(', ')}`);
    for (const slot of [s, ...Object.values(sides)]) await src.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);

    const counts = await runWorkload(src, s);

    java = startDebezium({
      classpath, stateDir, brokers: stackEnv.kafkaBrokers, sourceUrl: h.config().sourceUrl, restPort: await freePort(),
      logFile: process.env.DEBEZIUM_LOG ?? `${stateDir}/connect.log`,
      connectors: (Object.keys(sides) as Array<keyof typeof sides>).map((k) => ({
        prefix: sides[k], slot: sides[k], publication: `${s}_dbz`, schema: s, schemasEnable: modes[k].schemasEnable,
        extra: { 'provide.transaction.metadata': 'true', ...(modes[k].decimal ? { 'decimal.handling.mode': modes[k].decimal! } : {}) },
      })),
    });
    const capture = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_HEARTBEAT_MS: '0' }));
    stops.push(() => capture.stop());

    const topicsOf = (prefix: string) => TABLE_NAMES.map((t) => `${prefix}.${s}.${t}`);
    const expected = Object.values(counts).reduce((a, b) => a + b, 0);
    const read = async (prefix: string) => {
      const all = await consumeUntil(topicsOf(prefix), (xs) => xs.length >= expected, 240_000, false);
      expect(all.length, `${prefix}: records`).toBe(expected);
      return all;
    };
    // A JVM that dies (bad classpath, a connector that fails) fails the test at once, with its log.
    const died = new Promise<never>((_, reject) => java!.once('exit', (code) => {
      const logFile = process.env.DEBEZIUM_LOG ?? `${stateDir}/connect.log`;
      const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n') : '';
      reject(new Error(`Kafka Connect exited with ${code} before the workload was read:\n${tail}`));
    }));
    const [ours, on, off, str, dbl] = await Promise.race([died, Promise.all([read(s), read(sides.on), read(sides.off), read(sides.str), read(sides.dbl)])]);
    if (process.env.DEBEZIUM_DUMP) {
      writeFileSync(process.env.DEBEZIUM_DUMP, [...on, ...off].filter((m) => m.raw.value).map((m) => `${m.topic}\t${m.raw.key?.toString()}\t${m.raw.value!.toString()}`).join('\n'));
    }

    // The warehouse consumer on each of Debezium's JSON topic sets.
    wh = createWarehousePool(stackEnv.warehouseUrl);
    const kafka = new kafkajs.Kafka({ clientId: 'dbz', brokers: stackEnv.kafkaBrokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    stops.push(() => admin.disconnect());
    const runs = await Promise.all(Object.values(sides).map(async (prefix) => {
      const schemas = { staging: `${prefix}_stg`, analytics: `${prefix}_an`, meta: `${prefix}_wmeta` };
      created.push(schemas);
      await migrate(wh!, 'warehouse', { schemas: warehouseSchemaNames(schemas) });
      const consumer = new WarehouseConsumer({
        kafka, registry: createRegistry(stackEnv.registryUrl), pool: wh!, redis, schemas, group: `${prefix}_wh`,
        topics: topicsOf(prefix), redisKeyPrefix: `${prefix}:`, log: createLogger('dbz', 'warn'), topicWaitMs: 0,
      });
      const ac = new AbortController();
      await consumer.start(ac.signal);
      stops.push(async () => {
        ac.abort();
        await consumer.stop();
        const keys = await redis.keys(`${prefix}:*`);
        if (keys.length) await redis.del(...keys);
      });
      return { prefix, schemas };
    }));

    const sourceRows = async (table: TableName) => {
      const cols = Object.entries(TABLES[table].columns).map(([c, k]) => (k === 'timestamptz' ? `${isoSql(c)} AS ${c}` : `${c}::text AS ${c}`));
      const { rows } = await src.query(`SELECT ${cols.join(', ')} FROM ${s}.${table}`);
      return rows.map((r) => JSON.stringify(Object.keys(TABLES[table].columns).map((c) => r[c] ?? null))).sort();
    };
    for (const { prefix, schemas } of runs) {
      await waitCaughtUp(admin, wh, schemas, `${prefix}_wh`, topicsOf(prefix), { timeoutMs: 120_000 });
      const client = await wh.connect();
      try {
        for (const t of TABLE_NAMES) {
          const staged = (await stagingRows(client, schemas, t)).map((r) => JSON.stringify(Object.keys(TABLES[t].columns).map((c) => r[c] ?? null))).sort();
          expect(staged, `${prefix} stg_${t}`).toEqual(await sourceRows(t));
        }
        for (const d of await diffDerivedTables(client, schemas)) expect(d, `${prefix} ${d.table}`).toMatchObject({ missing: 0, unexpected: 0 });
        const dl = await wh.query(`SELECT count(*)::int AS n FROM "${schemas.meta}".dead_letters`).catch(() => ({ rows: [{ n: 0 }] }));
        expect(dl.rows[0].n, `${prefix} dead letters`).toBe(0);
      } finally {
        client.release();
      }
    }

    // Field by field: ours against Debezium (schemas on), and Debezium's two converters against each other.
    const decoder = new MessageDecoder(createRegistry(stackEnv.registryUrl));
    const canonical = async (prefix: string, msgs: typeof ours) => {
      const out: CanonicalRecord[] = [];
      for (const t of TABLE_NAMES) {
        const topic = `${prefix}.${s}.${t}`;
        out.push(...await canonicalRecords(decoder, topic, t, msgs.filter((m) => m.topic === topic).sort((a, b) => Number(a.offset) - Number(b.offset)).map((m) => m.raw)));
      }
      return out;
    };
    const [cOurs, cOn, cOff, cStr, cDbl] = [await canonical(s, ours), await canonical(sides.on, on), await canonical(sides.off, off), await canonical(sides.str, str), await canonical(sides.dbl, dbl)];
    const drift = diffRecords(cOurs, cOn, allowedDifference);
    expect(summarise(drift), 'ours vs Debezium: differences not in docs/encodings.md').toEqual({});
    // Every allow-listed difference is real (else it would hide nothing and should go).
    const raw = diffRecords(cOurs, cOn, () => false);
    for (const a of DEBEZIUM_ALLOWED_DIFFERENCES.filter((x) => x.mustDiffer)) {
      expect(raw.some((d) => a.field.test(d.field)), `allow-listed ${a.field} still differs`).toBe(true);
    }
    // The processing-time fields of the two connectors differ by nature; all else must be equal.
    // Debezium's converters and decimal modes against each other: only processing times and names may differ.
    for (const [what, other] of [['schemas off', cOff], ['decimal string', cStr], ['decimal double', cDbl]] as const) {
      const converters = diffRecords(cOn, other, (d) => /^(ts_ms|ts_us|ts_ns|source\.name)$/.test(d.field));
      expect(summarise(converters), `schemas on vs ${what}`).toEqual({});
    }
    // Processing times are real µs and ns, not ms padded with zeros.
    const ourUs = cOurs.map((r) => r.fields.ts_us).filter((x): x is string => !!x);
    expect(ourUs.filter((x) => !x.endsWith('000')).length, 'envelope ts_us with sub-ms digits').toBeGreaterThan(ourUs.length / 2);
    expect(cOurs.every((r) => !r.fields.op || (r.fields['source.ts_ns'] === `${r.fields['source.ts_us']}000`)), 'source.ts_ns = ts_us × 1000').toBe(true);
    // The envelope's three are one reading: ts_ms = ts_us / 1000 and ts_us = ts_ns / 1000 (truncated), on both sides.
    for (const [who, recs] of [['ours', cOurs], ['Debezium', cOn]] as const) {
      const changes = recs.filter((r) => r.fields.op);
      const bad = changes.filter((r) => {
        const big = (x: string | null | undefined) => BigInt(x ?? -1);
        const [ms, us, ns] = [big(r.fields.ts_ms), big(r.fields.ts_us), big(r.fields.ts_ns)];
        return ns < 0n || us !== ns / 1000n || ms !== us / 1000n;
      });
      expect(bad.map((r) => r.id), `${who}: envelope ts_ms/ts_us/ts_ns of one instant`).toEqual([]);
    }
    // Column schemas: our registered Avro Value record against Debezium's JSON schema.
    for (const t of TABLE_NAMES) {
      const res = await fetch(`${stackEnv.registryUrl}/subjects/${s}.${s}.${t}-value/versions/latest`);
      const ourSchema = JSON.parse(((await res.json()) as { schema: string }).schema);
      const first = on.find((m) => m.topic === `${sides.on}.${s}.${t}` && m.raw.value)!;
      const cols = diffColumnSchemas(ourSchema, JSON.parse(first.raw.value!.toString()).schema);
      expect(cols.ours, `${t} column schemas`).toEqual(cols.theirs);
    }
    // The TOASTed value arrived whole on both sides.
    const toast = cOurs.filter((r) => r.table === 'products' && (r.fields['after.product_name']?.length ?? 0) > 20_000);
    expect(toast.length).toBeGreaterThanOrEqual(2);
    // The update that left it unchanged (price and category only): `after` holds the full value from the before image, on both sides.
    for (const [who, recs] of [['ours', cOurs], ['Debezium', cOn]] as const) {
      const unchanged = recs.filter((r) => r.table === 'products' && r.fields.op === 'u' && r.fields['before.category'] === 'books' && r.fields['after.category'] === 'games' && r.fields['after.price'] === '12345.67');
      expect(unchanged, `${who}: the unchanged-TOAST update`).toHaveLength(1);
      expect(unchanged[0]!.fields['after.product_name']?.length, who).toBe(22_400);
      expect(unchanged[0]!.fields['after.product_name'], who).toBe(unchanged[0]!.fields['before.product_name']);
    }
  }, 420_000);
});
