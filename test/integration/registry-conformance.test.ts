import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Conformance of our registry with Confluent's REST API, driven over HTTP:
 * the real kafkajs client for the happy paths, raw fetch for status codes and
 * bodies. Registries run as real processes (`node --import tsx
 * src/registry/main.ts`) on free ports, on a Postgres schema of their own.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DATABASE_URL = stackEnv.registryDatabaseUrl; // REGISTRY_DATABASE_URL, else the stack's `registry` database
const SCHEMA = uniqueId('registry_conf');
const V1 = 'application/vnd.schemaregistry.v1+json';

class RegistryProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;
  url = '';
  stderr = '';

  static async start(env: Record<string, string> = {}): Promise<RegistryProcess> {
    const p = new RegistryProcess();
    await p.start(env);
    return p;
  }

  private start(env: Record<string, string>): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/registry/main.ts'], {
      cwd: REPO,
      env: { ...process.env, REGISTRY_DATABASE_URL: DATABASE_URL, REGISTRY_SCHEMA: SCHEMA, REGISTRY_PORT: '0', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`registry did not start: ${this.stderr}`)), 60_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'listening' && entry.url) {
            this.url = entry.url;
            clearTimeout(timer);
            resolve();
          }
        } catch {
          // not a log line
        }
      });
      void this.exited!.then((code) => {
        clearTimeout(timer);
        reject(new Error(`registry exited with ${code} before listening: ${this.stderr}`));
      });
    });
  }

  /** Waits for exit without signalling (for processes expected to fail at start-up). */
  exitCode(): Promise<number | null> {
    return this.exited!;
  }

  async stop(): Promise<number | null> {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exited!;
  }
}

/** Spawns a registry expected to refuse to start; returns its exit code and stderr. */
function startExpectingFailure(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/registry/main.ts'], {
    cwd: REPO,
    env: { ...process.env, REGISTRY_DATABASE_URL: DATABASE_URL, REGISTRY_SCHEMA: SCHEMA, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

interface Reply {
  status: number;
  contentType: string | null;
  body: any;
  text: string;
}

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': V1, ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, contentType: res.headers.get('content-type'), body: parsed, text };
}

/** The highest id any subject-version refers to, found through the API alone. */
async function maxRegisteredId(base: string): Promise<number> {
  let max = 0;
  for (const subject of (await call(base, 'GET', '/subjects?deleted=true')).body as string[]) {
    const path = `/subjects/${encodeURIComponent(subject)}/versions`;
    for (const version of (await call(base, 'GET', `${path}?deleted=true`)).body as number[]) {
      max = Math.max(max, (await call(base, 'GET', `${path}/${version}?deleted=true`)).body.id);
    }
  }
  return max;
}

const record = (name: string, fields: unknown[]) => ({ type: 'record', name, namespace: 'conformance', fields });
const orderV1 = record('Order', [
  { name: 'id', type: 'long' },
  { name: 'total', type: 'string' },
]);
const orderWithDefault = record('Order', [
  { name: 'id', type: 'long' },
  { name: 'total', type: 'string' },
  { name: 'currency', type: 'string', default: 'EUR' },
]);
const orderWithRequired = record('Order', [
  { name: 'id', type: 'long' },
  { name: 'total', type: 'string' },
  { name: 'customer', type: 'long' },
]);
const body = (schema: unknown) => ({ schema: JSON.stringify(schema) });

let a: RegistryProcess;
let b: RegistryProcess;
let A: string; // base URL of registry process a
let B: string;

beforeAll(async () => {
  [a, b] = await Promise.all([RegistryProcess.start(), RegistryProcess.start()]);
  A = a.url;
  B = b.url;
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
  await client.end();
});

describe('kafkajs client', () => {
  it('registers, resolves and round-trips a message; an identical schema gets the same id', async () => {
    const registry = new SchemaRegistry({ host: A });
    const subject = 'kafkajs-orders-value';
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(orderV1) }, { subject });
    expect(id).toBeGreaterThan(0);

    // Same schema, different layout, fresh client (no cache): same id, no new version.
    const again = await new SchemaRegistry({ host: A }).register(
      { type: SchemaType.AVRO, schema: JSON.stringify(orderV1, null, 2) },
      { subject },
    );
    expect(again.id).toBe(id);
    expect((await call(A, 'GET', `/subjects/${subject}/versions`)).body).toEqual([1]);

    // Same schema under another subject: the global id is shared.
    const other = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(orderV1) }, { subject: 'kafkajs-other-value' });
    expect(other.id).toBe(id);

    expect(await registry.getLatestSchemaId(subject)).toBe(id);
    expect(await registry.getRegistryId(subject, 1)).toBe(id);
    expect(await registry.getRegistryIdBySchema(subject, { type: SchemaType.AVRO, schema: JSON.stringify(orderV1) })).toBe(id);

    const payload = { id: 42, total: '19.99' };
    const encoded = await registry.encode(id, payload);
    expect(encoded.readUInt8(0)).toBe(0);
    expect(encoded.readInt32BE(1)).toBe(id);
    // Decode with a client that has never seen the schema, against the other process.
    expect(await new SchemaRegistry({ host: B }).decode(encoded)).toEqual(payload);

    // The client set the subject's level after its first registration.
    expect((await call(A, 'GET', `/config/${subject}`)).body).toEqual({ compatibilityLevel: 'BACKWARD' });
  });

  it('surfaces a 409 for an incompatible schema', async () => {
    const registry = new SchemaRegistry({ host: A });
    await expect(
      registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(orderWithRequired) }, { subject: 'kafkajs-orders-value' }),
    ).rejects.toMatchObject({ status: 409 });
  });
});

describe('registration and compatibility', () => {
  const subject = 'orders-value';

  it('GET / answers {} with the registry content type', async () => {
    const r = await call(A, 'GET', '/');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({});
    expect(r.contentType).toBe(V1);
  });

  it('rejects an incompatible change under BACKWARD with 409 and the reason', async () => {
    const first = await call(A, 'POST', `/subjects/${subject}/versions`, body(orderV1));
    expect(first.status).toBe(200);
    const r = await call(A, 'POST', `/subjects/${subject}/versions`, body(orderWithRequired));
    expect(r.status).toBe(409);
    expect(r.body.error_code).toBe(409);
    expect(r.body.message).toContain('incompatible');
    expect(r.body.message).toContain('no matching field for default-less conformance.Order.customer');
    expect((await call(A, 'GET', `/subjects/${subject}/versions`)).body).toEqual([1]);
  });

  it('accepts an added field with a default as a new version with a new id', async () => {
    const v1 = await call(A, 'GET', `/subjects/${subject}/versions/1`);
    const r = await call(A, 'POST', `/subjects/${subject}/versions`, body(orderWithDefault));
    expect(r.status).toBe(200);
    expect(r.body.id).toBeGreaterThan(v1.body.id);
    expect((await call(A, 'GET', `/subjects/${subject}/versions`)).body).toEqual([1, 2]);
    const latest = await call(A, 'GET', `/subjects/${subject}/versions/latest`);
    expect(latest.body).toEqual({ subject, version: 2, id: r.body.id, schema: JSON.stringify(orderWithDefault) });
    expect((await call(A, 'GET', `/subjects/${subject}/versions/-1`)).body.version).toBe(2);
  });

  it('looks a schema up under a subject', async () => {
    const found = await call(A, 'POST', `/subjects/${subject}`, body(orderWithDefault));
    expect(found.status).toBe(200);
    expect(found.body).toMatchObject({ subject, version: 2 });
    const missing = await call(A, 'POST', `/subjects/${subject}`, body(orderWithRequired));
    expect([missing.status, missing.body.error_code]).toEqual([404, 40403]);
    const noSubject = await call(A, 'POST', '/subjects/no-such-subject', body(orderV1));
    expect([noSubject.status, noSubject.body.error_code]).toEqual([404, 40401]);
  });

  it('serves schemas by id, raw, with their subject-versions, and the schema types', async () => {
    const { id } = (await call(A, 'GET', `/subjects/${subject}/versions/1`)).body;
    const byId = await call(A, 'GET', `/schemas/ids/${id}`);
    expect(byId.body).toEqual({ schema: JSON.stringify(orderV1) }); // no schemaType for AVRO, like Confluent
    expect((await call(A, 'GET', `/schemas/ids/${id}/schema`)).text).toBe(JSON.stringify(orderV1));
    expect((await call(A, 'GET', `/subjects/${subject}/versions/1/schema`)).text).toBe(JSON.stringify(orderV1));
    expect((await call(A, 'GET', `/schemas/ids/${id}/versions`)).body).toContainEqual({ subject, version: 1 });
    expect((await call(A, 'GET', '/schemas/types')).body).toEqual(['AVRO']);
  });

  it('answers Confluent error codes for unknown ids, subjects, versions and bad input', async () => {
    const expectError = async (r: Promise<Reply>, status: number, code: number) => {
      const res = await r;
      expect([res.status, res.body?.error_code], res.text).toEqual([status, code]);
      expect(typeof res.body.message).toBe('string');
    };
    await expectError(call(A, 'GET', '/schemas/ids/987654'), 404, 40403);
    await expectError(call(A, 'GET', '/schemas/ids/987654/schema'), 404, 40403);
    await expectError(call(A, 'GET', '/subjects/nope/versions'), 404, 40401);
    await expectError(call(A, 'GET', '/subjects/nope/versions/latest'), 404, 40401);
    await expectError(call(A, 'GET', `/subjects/${subject}/versions/99`), 404, 40402);
    await expectError(call(A, 'GET', `/subjects/${subject}/versions/zero`), 422, 42202);
    await expectError(call(A, 'GET', `/subjects/${subject}/versions/0`), 422, 42202);
    await expectError(call(A, 'POST', `/subjects/${subject}/versions`, { schema: '{"type":"record","name":"X"}' }), 422, 42201);
    await expectError(call(A, 'POST', `/subjects/${subject}/versions`, { schema: 'not json' }), 422, 42201);
    await expectError(call(A, 'POST', `/subjects/${subject}/versions`, { schema: '"int"', schemaType: 'PROTOBUF' }), 422, 42201);
  });

  it('accepts the JSON content types clients send and negotiates the response type', async () => {
    for (const type of ['application/json', 'application/vnd.schemaregistry+json', V1]) {
      const r = await call(A, 'POST', '/subjects/content-types-value/versions', body(orderV1), { 'content-type': type });
      expect(r.status, type).toBe(200);
    }
    expect((await call(A, 'GET', '/config', undefined, { accept: 'application/json' })).contentType).toBe('application/json');
    expect((await call(A, 'GET', '/config', undefined, { accept: '*/*' })).contentType).toBe(V1);
  });

  it('accepts the register body of the Java client / Kafka Connect', async () => {
    const javaBody = { schema: JSON.stringify(orderV1), schemaType: 'AVRO', references: [], metadata: null, ruleSet: null };
    const r = await call(A, 'POST', '/subjects/connect-value/versions?normalize=false', javaBody, {
      accept: 'application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5',
    });
    expect([r.status, r.contentType]).toEqual([200, V1]);
    const lookup = await call(A, 'POST', '/subjects/connect-value?normalize=false&deleted=false', javaBody);
    expect(lookup.body).toMatchObject({ subject: 'connect-value', version: 1, id: r.body.id });
  });

  it('handles subject names that need URL encoding', async () => {
    const r = await call(A, 'POST', `/subjects/${encodeURIComponent('shop/orders value')}/versions`, body(orderV1));
    expect(r.status).toBe(200);
    expect((await call(A, 'GET', '/subjects')).body).toContain('shop/orders value');
  });

  it('checks compatibility without registering', async () => {
    const bad = await call(A, 'POST', `/compatibility/subjects/${subject}/versions/latest?verbose=true`, body(orderWithRequired));
    expect(bad.status).toBe(200);
    expect(bad.body.is_compatible).toBe(false);
    expect(bad.body.messages.join(' ')).toContain('customer');
    const good = await call(A, 'POST', `/compatibility/subjects/${subject}/versions/1`, body(orderWithDefault));
    expect(good.body).toEqual({ is_compatible: true });
    const missing = await call(A, 'POST', `/compatibility/subjects/${subject}/versions/42`, body(orderV1));
    expect([missing.status, missing.body.error_code]).toEqual([404, 40402]);
  });
});

describe('config', () => {
  it('reads and writes the global and subject levels', async () => {
    expect((await call(A, 'GET', '/config')).body).toEqual({ compatibilityLevel: 'BACKWARD' });
    const invalid = await call(A, 'PUT', '/config', { compatibility: 'SIDEWAYS' });
    expect([invalid.status, invalid.body.error_code]).toEqual([422, 42203]);

    const subject = 'config-value';
    const unset = await call(A, 'GET', `/config/${subject}`);
    expect([unset.status, unset.body.error_code]).toEqual([404, 40408]);
    expect((await call(A, 'GET', `/config/${subject}?defaultToGlobal=true`)).body).toEqual({ compatibilityLevel: 'BACKWARD' });

    expect((await call(A, 'PUT', `/config/${subject}`, { compatibility: 'NONE' })).body).toEqual({ compatibility: 'NONE' });
    expect((await call(B, 'GET', `/config/${subject}`)).body).toEqual({ compatibilityLevel: 'NONE' });

    // The level is honoured: under NONE an incompatible change registers.
    expect((await call(A, 'POST', `/subjects/${subject}/versions`, body(orderV1))).status).toBe(200);
    expect((await call(A, 'POST', `/subjects/${subject}/versions`, body(orderWithRequired))).status).toBe(200);

    expect((await call(A, 'DELETE', `/config/${subject}`)).body).toEqual({ compatibilityLevel: 'NONE' });
    expect((await call(A, 'GET', `/config/${subject}`)).status).toBe(404);
    const again = await call(A, 'DELETE', `/config/${subject}`);
    expect([again.status, again.body.error_code]).toEqual([404, 40401]);

    // Global level changes apply to subjects without their own.
    expect((await call(A, 'PUT', '/config', { compatibility: 'full_transitive' })).body).toEqual({ compatibility: 'FULL_TRANSITIVE' });
    expect((await call(B, 'GET', '/config')).body).toEqual({ compatibilityLevel: 'FULL_TRANSITIVE' });
    expect((await call(A, 'GET', `/config/${subject}?defaultToGlobal=true`)).body).toEqual({ compatibilityLevel: 'FULL_TRANSITIVE' });
    expect((await call(A, 'PUT', '/config', { compatibility: 'BACKWARD' })).status).toBe(200);
  });
});

describe('deletes', () => {
  const subject = 'deletes-value';

  it('soft-deletes and hard-deletes versions and subjects with Confluent semantics', async () => {
    const id1 = (await call(A, 'POST', `/subjects/${subject}/versions`, body(orderV1))).body.id;
    const id2 = (await call(A, 'POST', `/subjects/${subject}/versions`, body(orderWithDefault))).body.id;

    // Hard delete needs a soft delete first.
    const notSoft = await call(A, 'DELETE', `/subjects/${subject}/versions/1?permanent=true`);
    expect([notSoft.status, notSoft.body.error_code]).toEqual([404, 40407]);

    expect((await call(A, 'DELETE', `/subjects/${subject}/versions/1`)).body).toBe(1);
    expect((await call(A, 'GET', `/subjects/${subject}/versions`)).body).toEqual([2]);
    expect((await call(A, 'GET', `/subjects/${subject}/versions?deleted=true`)).body).toEqual([1, 2]);
    const twice = await call(A, 'DELETE', `/subjects/${subject}/versions/1`);
    expect([twice.status, twice.body.error_code]).toEqual([404, 40406]);
    expect((await call(A, 'GET', `/subjects/${subject}/versions/1`)).status).toBe(404);
    expect((await call(A, 'GET', `/subjects/${subject}/versions/1?deleted=true`)).body.id).toBe(id1);
    // Consumers can still decode data written with a soft-deleted version.
    expect((await call(A, 'GET', `/schemas/ids/${id1}`)).status).toBe(200);

    const subjectNotSoft = await call(A, 'DELETE', `/subjects/${subject}?permanent=true`);
    expect([subjectNotSoft.status, subjectNotSoft.body.error_code]).toEqual([404, 40405]);
    expect((await call(A, 'DELETE', `/subjects/${subject}`)).body).toEqual([2]);
    expect((await call(A, 'GET', '/subjects')).body).not.toContain(subject);
    expect((await call(A, 'GET', '/subjects?deleted=true')).body).toContain(subject);
    const softAgain = await call(A, 'DELETE', `/subjects/${subject}`);
    expect([softAgain.status, softAgain.body.error_code]).toEqual([404, 40404]);
    const gone = await call(A, 'GET', `/subjects/${subject}/versions`);
    expect([gone.status, gone.body.error_code]).toEqual([404, 40401]);

    expect((await call(A, 'DELETE', `/subjects/${subject}?permanent=true`)).body).toEqual([1, 2]);
    expect((await call(A, 'GET', '/subjects?deleted=true')).body).not.toContain(subject);
    const unknown = await call(A, 'DELETE', `/subjects/${subject}`);
    expect([unknown.status, unknown.body.error_code]).toEqual([404, 40401]);

    // Ids are never reused: a brand-new schema after the hard delete gets a higher id.
    const fresh = record('AfterDelete', [{ name: 'x', type: 'int' }]);
    const id3 = (await call(A, 'POST', `/subjects/${subject}/versions`, body(fresh))).body.id;
    expect(id3).toBeGreaterThan(Math.max(id1, id2));
    expect((await call(A, 'GET', `/subjects/${subject}/versions`)).body).toEqual([1]);
  });
});

describe('durability and concurrency', () => {
  it('keeps ids across a restart; new registrations continue above them', async () => {
    const subject = 'restart-value';
    const registry = new SchemaRegistry({ host: A });
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(orderV1) }, { subject });
    const encoded = await registry.encode(id, { id: 1, total: '5.00' });
    const maxBefore = await maxRegisteredId(A);

    expect(await a.stop()).toBe(0); // SIGTERM drains and exits 0
    a = await RegistryProcess.start();
    A = a.url;

    expect((await call(A, 'GET', `/schemas/ids/${id}`)).body).toEqual({ schema: JSON.stringify(orderV1) });
    expect((await call(A, 'GET', `/subjects/${subject}/versions/latest`)).body.id).toBe(id);
    expect(await new SchemaRegistry({ host: A }).decode(encoded)).toEqual({ id: 1, total: '5.00' });
    const again = await call(A, 'POST', `/subjects/${subject}/versions`, body(orderV1));
    expect(again.body.id).toBe(id);

    // A schema never registered before, compatible with v1.
    const withNote = record('Order', [...orderV1.fields, { name: 'note', type: ['null', 'string'], default: null }]);
    const fresh = await call(A, 'POST', `/subjects/${subject}/versions`, body(withNote));
    expect(fresh.status, fresh.text).toBe(200);
    expect(fresh.body.id).toBeGreaterThan(maxBefore);
  });

  it('gives one id to the same schema registered concurrently through two processes', async () => {
    const schema = record('Concurrent', [{ name: 'n', type: 'long' }]);
    const attempts = Array.from({ length: 16 }, (_, i) =>
      call(i % 2 === 0 ? A : B, 'POST', `/subjects/concurrent-${i % 4}/versions`, body(schema)),
    );
    const replies = await Promise.all(attempts);
    for (const r of replies) expect(r.status, r.text).toBe(200);
    const ids = new Set(replies.map((r) => r.body.id));
    expect(ids.size).toBe(1);
    for (let s = 0; s < 4; s++) {
      expect((await call(B, 'GET', `/subjects/concurrent-${s}/versions`)).body).toEqual([1]);
    }
  });
});

describe('process', () => {
  it('exits 2 with one line on a bad config value', async () => {
    const { code, stderr } = await startExpectingFailure({ REGISTRY_PORT: 'eighty' });
    expect(code).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('REGISTRY_PORT');
  });
});
