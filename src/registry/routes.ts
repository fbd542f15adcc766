import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { basicChecker } from '../api/auth.ts';
import type { Logger } from '../logger.ts';
import { parseCompatibilityLevel, SUPPORTED_SCHEMA_TYPES, type CompatibilityLevel } from './compatibility.ts';
import { RegistryRestError, restErrors } from './errors.ts';
import { flag, negotiate, page, parseSchemaId, sendJson, sendRaw, stringParam, unsupportedContentType } from './http.ts';
import { registerOpsRoutes, RegistryMetrics } from './routes-ops.ts';
import { registerSubjectRoutes, versionBody } from './routes-subjects.ts';
import type { RegistryStore } from './store.ts';

const OPS_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The Confluent-compatible REST surface. Routes for /, /schemas and /config
 * live here; /subjects and /compatibility in routes-subjects.ts.
 */
export interface RegistryHttpOptions {
  /** Require this user on every route but the probes. */
  basicAuth?: { username: string; password: string };
  /** Serve https. */
  tls?: { cert: Buffer; key: Buffer };
}

const PROBE_PATHS = new Set(['/healthz', '/readyz']);

export function buildApp(store: RegistryStore, log: Logger, metrics: RegistryMetrics = new RegistryMetrics(), http: RegistryHttpOptions = {}): FastifyInstance {
  const app = Fastify({
    ...(http.tls ? { https: { cert: http.tls.cert, key: http.tls.key } } : {}),
    // Typed as Fastify's logger so the instance keeps the default generics the route files use.
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { ignoreTrailingSlash: true },
    bodyLimit: 8 * 1024 * 1024,
  });

  // Clients send application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json,
  // application/json or (curl) anything at all; Confluent reads every one of them as JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(restErrors.badRequest(`Unrecognized request body, expected JSON: ${(err as Error).message}`), undefined);
    }
  });

  app.setErrorHandler((err: FastifyError | RegistryRestError, req, reply) => {
    if (err instanceof RegistryRestError) {
      if (err.status >= 500) req.log.error({ err: err.cause ?? err, url: req.url }, err.message);
      return sendJson(req, reply, err.toBody(), err.status);
    }
    const status = (err as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return sendJson(req, reply, { error_code: status, message: err.message }, status);
    }
    // Anything unexpected here is the store (Postgres) failing; Confluent calls that 50001.
    req.log.error({ err, method: req.method, url: req.url }, 'request failed');
    return sendJson(req, reply, restErrors.store(`Error in the backend data store: ${err.message}`).toBody(), 500);
  });

  // Content negotiation as Confluent's JAX-RS resources do it: an Accept
  // none of the JSON types satisfies is 406, a request body of another
  // media type is 415 (docs/registry.md). The ops endpoints (/healthz,
  // /readyz, /metrics) are ours, not Confluent's: Prometheus asks for text.
  if (http.basicAuth) {
    const authorized = basicChecker(http.basicAuth.username, http.basicAuth.password);
    // Confluent's registry answers 401 with error_code 401 and a Basic challenge.
    app.addHook('onRequest', async (req, reply) => {
      if (PROBE_PATHS.has(req.url.split('?')[0]!) || authorized(req.headers.authorization)) return undefined;
      return reply.code(401).header('www-authenticate', 'Basic realm="schema-registry"').header('content-type', 'application/vnd.schemaregistry.v1+json')
        .send(Buffer.from(JSON.stringify({ error_code: 401, message: 'Unauthorized' })));
    });
  }

  app.addHook('onRequest', async (req, reply) => {
    if (OPS_PATHS.has(req.url.split('?')[0]!)) return undefined;
    if (negotiate(req.headers.accept) === undefined) {
      return reply.code(406).header('content-type', 'application/vnd.schemaregistry.v1+json').send(Buffer.from(JSON.stringify({ error_code: 406, message: 'HTTP 406 Not Acceptable' })));
    }
    if ((req.method === 'POST' || req.method === 'PUT') && unsupportedContentType(req.headers['content-type'])) {
      return sendJson(req, reply, { error_code: 415, message: 'HTTP 415 Unsupported Media Type' }, 415);
    }
    return undefined;
  });

  app.setNotFoundHandler((req, reply) => sendJson(req, reply, { error_code: 404, message: 'HTTP 404 Not Found' }, 404));

  app.addHook('onResponse', async (req, reply) => {
    req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  app.get('/', (req, reply) => sendJson(req, reply, {}));

  app.get('/schemas/types', (req, reply) => sendJson(req, reply, [...SUPPORTED_SCHEMA_TYPES]));

  app.get<{ Params: { id: string } }>('/schemas/ids/:id', async (req, reply) => {
    const id = parseSchemaId(req.params.id);
    const found = await store.schemaById(id);
    if (!found) throw restErrors.schemaNotFound(id);
    // Like Confluent, schemaType is omitted for AVRO (older clients do not expect the field).
    return sendJson(req, reply, found.schemaType === 'AVRO' ? { schema: found.schema } : found);
  });

  app.get<{ Params: { id: string } }>('/schemas/ids/:id/schema', async (req, reply) => {
    const id = parseSchemaId(req.params.id);
    const found = await store.schemaById(id);
    if (!found) throw restErrors.schemaNotFound(id);
    return sendRaw(req, reply, found.schema);
  });

  // 404 only for an id nothing uses any more; an id whose subject-versions are all
  // soft-deleted (or filtered out) lists nothing, as Confluent does.
  app.get<{ Params: { id: string } }>('/schemas/ids/:id/versions', async (req, reply) => {
    const id = parseSchemaId(req.params.id);
    if (!(await store.schemaById(id))) throw restErrors.schemaNotFound(id);
    return sendJson(req, reply, page(req.query, await store.versionsOfId(id, flag(req.query, 'deleted'), stringParam(req.query, 'subject'))));
  });

  app.get<{ Params: { id: string } }>('/schemas/ids/:id/subjects', async (req, reply) => {
    const id = parseSchemaId(req.params.id);
    if (!(await store.schemaById(id))) throw restErrors.schemaNotFound(id);
    return sendJson(req, reply, page(req.query, await store.subjectsOfId(id, flag(req.query, 'deleted'), stringParam(req.query, 'subject'))));
  });

  // Confluent's GET /schemas: every subject-version (subjectPrefix, deleted, latestOnly), paged by offset/limit.
  app.get('/schemas', async (req, reply) => {
    const all = await store.allVersions(stringParam(req.query, 'subjectPrefix') ?? '', flag(req.query, 'deleted'), flag(req.query, 'latestOnly'));
    return sendJson(req, reply, page(req.query, all).map(versionBody));
  });

  app.get('/config', async (req, reply) => sendJson(req, reply, { compatibilityLevel: await store.globalLevel() }));

  app.put('/config', async (req, reply) => {
    const level = compatibilityFromBody(req.body);
    await store.setLevel(undefined, level);
    return sendJson(req, reply, { compatibility: level });
  });

  app.delete('/config', async (req, reply) => {
    // Resets the global level to the server default and reports what it was.
    const previous = (await store.deleteLevel(undefined)) ?? (await store.globalLevel());
    return sendJson(req, reply, { compatibilityLevel: previous });
  });

  app.get<{ Params: { subject: string } }>('/config/:subject', async (req, reply) => {
    const level = await store.subjectLevel(req.params.subject, flag(req.query, 'defaultToGlobal'));
    if (!level) throw restErrors.subjectConfigNotFound(req.params.subject);
    return sendJson(req, reply, { compatibilityLevel: level });
  });

  app.put<{ Params: { subject: string } }>('/config/:subject', async (req, reply) => {
    const level = compatibilityFromBody(req.body);
    await store.setLevel(req.params.subject, level);
    return sendJson(req, reply, { compatibility: level });
  });

  app.delete<{ Params: { subject: string } }>('/config/:subject', async (req, reply) => {
    const previous = await store.deleteLevel(req.params.subject);
    if (!previous) throw restErrors.subjectNotFound(req.params.subject);
    return sendJson(req, reply, { compatibilityLevel: previous });
  });

  registerSubjectRoutes(app, store, log);
  registerOpsRoutes(app, store, metrics);
  return app;
}

function compatibilityFromBody(body: unknown): CompatibilityLevel {
  const level = parseCompatibilityLevel((body as Record<string, unknown> | undefined)?.compatibility);
  if (!level) throw restErrors.invalidCompatibility();
  return level;
}
