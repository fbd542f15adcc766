import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { loadRegistryConfig } from '../../src/registry/config.ts';
import { RegistryService } from '../../src/registry/server.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Conformance with Confluent's REST API, continued (registry-conformance.
 * test.ts has the rest): GET /subjects?deletedOnly, GET /schemas with its
 * query parameters, GET /schemas/ids/{id}/subjects and /versions, and
 * content negotiation (406 for an Accept nothing satisfies, 415 for a body
 * Confluent does not consume). The registry runs in-process on a free port
 * over the real Postgres, on a schema of its own.
 */
const V1 = 'application/vnd.schemaregistry.v1+json';
const SCHEMA = uniqueId('registry_list');
let svc: RegistryService;
let base = '';

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': V1, ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, contentType: res.headers.get('content-type'), body: json, text };
}

const rec = (name: string, extra: unknown[] = []) => ({ schema: JSON.stringify({ type: 'record', name, namespace: 'listing', fields: [{ name: 'id', type: 'long' }, ...extra] }) });

beforeAll(async () => {
  svc = new RegistryService(loadRegistryConfig({ REGISTRY_DATABASE_URL: stackEnv.registryDatabaseUrl, REGISTRY_SCHEMA: SCHEMA, REGISTRY_PORT: '0' }), createLogger('registry-listing', 'warn'));
  await svc.start(new AbortController().signal);
  base = svc.url;
});

afterAll(async () => {
  await svc?.stop();
  await svc?.stop(); // safe twice
  const c = new pg.Client({ connectionString: stackEnv.registryDatabaseUrl });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
  await c.end();
});

describe('listing endpoints', () => {
  it('lists subjects live, with deleted, and deleted only', async () => {
    const idA = (await call('POST', '/subjects/a-value/versions', rec('A'))).body.id;
    await call('POST', '/subjects/b-value/versions', rec('B'));
    await call('POST', '/subjects/b-value/versions', rec('B', [{ name: 'x', type: 'int', default: 0 }]));
    await call('POST', '/subjects/c-key/versions', rec('A')); // same schema as a-value: same id
    expect((await call('DELETE', '/subjects/a-value')).body).toEqual([1]);
    expect((await call('DELETE', '/subjects/b-value/versions/1')).body).toBe(1); // b-value keeps a live version

    expect((await call('GET', '/subjects')).body).toEqual(['b-value', 'c-key']);
    expect((await call('GET', '/subjects?deleted=true')).body).toEqual(['a-value', 'b-value', 'c-key']);
    expect((await call('GET', '/subjects?deletedOnly=true')).body).toEqual(['a-value']);
    expect((await call('GET', '/subjects?deletedOnly=true&deleted=true')).body).toEqual(['a-value']);
    expect((await call('GET', '/subjects?deletedOnly=true&subjectPrefix=b')).body).toEqual([]);
    expect((await call('GET', '/subjects?subjectPrefix=c')).body).toEqual(['c-key']);
    // Paged like Confluent's: offset, then limit; a limit of 0 or below is no limit.
    expect((await call('GET', '/subjects?deleted=true&offset=1&limit=1')).body).toEqual(['b-value']);
    expect((await call('GET', '/subjects?deleted=true&offset=1&limit=0')).body).toEqual(['b-value', 'c-key']);

    // A subject's versions: deletedOnly lists its soft-deleted ones (possibly none); 40401 only without any version.
    expect((await call('GET', '/subjects/b-value/versions')).body).toEqual([2]);
    expect((await call('GET', '/subjects/b-value/versions?deletedOnly=true')).body).toEqual([1]);
    expect((await call('GET', '/subjects/b-value/versions?deleted=true&limit=1&offset=1')).body).toEqual([2]);
    expect((await call('GET', '/subjects/c-key/versions?deletedOnly=true')).body).toEqual([]);
    expect((await call('GET', '/subjects/a-value/versions?deletedOnly=true')).body).toEqual([1]);
    const gone = await call('GET', '/subjects/a-value/versions');
    expect([gone.status, gone.body.error_code]).toEqual([404, 40401]);

    // The subjects and subject-versions behind an id.
    expect((await call('GET', `/schemas/ids/${idA}/subjects`)).body).toEqual(['c-key']);
    expect((await call('GET', `/schemas/ids/${idA}/subjects?deleted=true`)).body).toEqual(['a-value', 'c-key']);
    expect((await call('GET', `/schemas/ids/${idA}/subjects?deleted=true&subject=a-value`)).body).toEqual(['a-value']);
    expect((await call('GET', `/schemas/ids/${idA}/subjects?deleted=true&offset=1`)).body).toEqual(['c-key']);
    expect((await call('GET', `/schemas/ids/${idA}/versions?deleted=true`)).body).toEqual([{ subject: 'a-value', version: 1 }, { subject: 'c-key', version: 1 }]);
    expect((await call('GET', `/schemas/ids/${idA}/versions?deleted=true&subject=c-key`)).body).toEqual([{ subject: 'c-key', version: 1 }]);
    expect((await call('GET', `/schemas/ids/${idA}/versions?deleted=true&limit=1`)).body).toEqual([{ subject: 'a-value', version: 1 }]);
    // The id is still in use (by a soft-deleted version): an empty list, not 40403, as Confluent.
    expect((await call('GET', `/schemas/ids/${idA}/subjects?subject=a-value`)).body).toEqual([]);
    const idOnlyDeleted = (await call('POST', '/subjects/d-value/versions', rec('D'))).body.id;
    await call('DELETE', '/subjects/d-value');
    expect((await call('GET', `/schemas/ids/${idOnlyDeleted}`)).status).toBe(200);
    expect((await call('GET', `/schemas/ids/${idOnlyDeleted}/subjects`)).body).toEqual([]);
    expect((await call('GET', `/schemas/ids/${idOnlyDeleted}/versions`)).body).toEqual([]);
    expect((await call('GET', `/schemas/ids/${idOnlyDeleted}/subjects?deleted=true`)).body).toEqual(['d-value']);
    // Hard-deleted everywhere: the id is gone.
    await call('DELETE', '/subjects/d-value?permanent=true');
    const hard = await call('GET', `/schemas/ids/${idOnlyDeleted}/subjects?deleted=true`);
    expect([hard.status, hard.body.error_code]).toEqual([404, 40403]);
    const missing = await call('GET', '/schemas/ids/987654/subjects');
    expect([missing.status, missing.body.error_code]).toEqual([404, 40403]);
    const bad = await call('GET', '/schemas/ids/abc/subjects');
    expect([bad.status, bad.body.error_code]).toEqual([404, 40403]);
  });

  it('lists schemas with subjectPrefix, deleted, latestOnly, offset and limit', async () => {
    const all = (await call('GET', '/schemas')).body as Array<{ subject: string; version: number; id: number; schema: string; schemaType?: string }>;
    expect(all.map((s) => `${s.subject}/${s.version}`)).toEqual(['b-value/2', 'c-key/1']);
    expect(all[0]).toEqual({ subject: 'b-value', version: 2, id: expect.any(Number), schema: expect.stringContaining('"B"') });
    expect(all[0]).not.toHaveProperty('schemaType'); // omitted for AVRO, as Confluent does
    const withDeleted = (await call('GET', '/schemas?deleted=true')).body.map((s: { subject: string; version: number }) => `${s.subject}/${s.version}`);
    expect(withDeleted).toEqual(['a-value/1', 'b-value/1', 'b-value/2', 'c-key/1']);
    expect((await call('GET', '/schemas?deleted=true&latestOnly=true')).body.map((s: { subject: string; version: number }) => `${s.subject}/${s.version}`))
      .toEqual(['a-value/1', 'b-value/2', 'c-key/1']);
    expect((await call('GET', '/schemas?subjectPrefix=b&deleted=true')).body.map((s: { version: number }) => s.version)).toEqual([1, 2]);
    expect((await call('GET', '/schemas?deleted=true&offset=1&limit=2')).body.map((s: { subject: string; version: number }) => `${s.subject}/${s.version}`))
      .toEqual(['b-value/1', 'b-value/2']);
    expect((await call('GET', '/schemas?deleted=true&offset=3&limit=-1')).body).toHaveLength(1);
    expect((await call('GET', '/schemas?subjectPrefix=zzz')).body).toEqual([]);
  });
});

describe('content negotiation', () => {
  it('answers 406 for an Accept it cannot serve and picks the response type by q and Confluent\'s qs', async () => {
    for (const accept of ['text/plain', 'application/xml', 'text/*', 'application/json;q=0']) {
      const r = await call('GET', '/subjects', undefined, { accept });
      expect([r.status, r.body?.error_code], accept).toEqual([406, 406]);
    }
    const types = async (accept: string) => (await call('GET', '/subjects', undefined, { accept })).contentType;
    expect(await types('*/*')).toBe(V1);
    expect(await types('application/*')).toBe(V1);
    expect(await types('application/json')).toBe('application/json');
    expect(await types('application/vnd.schemaregistry+json')).toBe('application/vnd.schemaregistry+json');
    expect(await types('application/json, application/vnd.schemaregistry+json')).toBe('application/vnd.schemaregistry+json');
    expect(await types('text/plain, application/json;q=0.8')).toBe('application/json');
    expect(await types(`${V1}, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5`)).toBe(V1); // the Java client
    expect((await call('GET', '/subjects')).status).toBe(200); // no Accept at all
    // Our ops endpoints are not Confluent's: Prometheus' text Accept is served.
    expect((await call('GET', '/metrics', undefined, { accept: 'text/plain;version=0.0.4;q=1,*/*;q=0.1' })).status).toBe(200);
    expect((await call('GET', '/healthz', undefined, { accept: 'text/plain' })).status).toBe(200);
  });

  it('answers 415 for a request body Confluent does not consume and accepts the ones it does', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const r = await call('POST', '/subjects/ct-value/versions', rec('Ct'), { 'content-type': type });
      expect([r.status, r.body?.error_code], type).toEqual([415, 415]);
      const put = await call('PUT', '/config', { compatibility: 'NONE' }, { 'content-type': type });
      expect(put.status, `PUT ${type}`).toBe(415);
    }
    expect((await call('GET', '/subjects')).body).not.toContain('ct-value');
    for (const type of [V1, 'application/vnd.schemaregistry+json', 'application/json', 'application/json; charset=utf-8', 'application/octet-stream']) {
      expect((await call('POST', '/subjects/ct-value/versions', rec('Ct'), { 'content-type': type })).status, type).toBe(200);
    }
    // No Content-Type at all (as Jersey, taken as application/octet-stream).
    const res = await fetch(`${base}/subjects/ct-value/versions`, { method: 'POST', body: new Blob([JSON.stringify(rec('Ct'))]) });
    expect(res.status).toBe(200);
  });
});
