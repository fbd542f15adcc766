import type { FastifyReply, FastifyRequest } from 'fastify';
import { SUPPORTED_SCHEMA_TYPES } from './compatibility.ts';
import { restErrors } from './errors.ts';

/** Request/response helpers shared by the route files: content negotiation and Confluent's parameter rules. */

export const V1_JSON = 'application/vnd.schemaregistry.v1+json';
const DEFAULT_JSON = 'application/vnd.schemaregistry+json';
const PLAIN_JSON = 'application/json';

/** What Confluent's resources produce, with their server-side quality (`qs`): v1 first, plain JSON last. */
const PRODUCES: ReadonlyArray<[string, number]> = [[V1_JSON, 1], [DEFAULT_JSON, 0.9], [PLAIN_JSON, 0.5]];
/** What they consume; application/octet-stream is what a client without a Content-Type is taken to send. */
const CONSUMES = new Set([V1_JSON, DEFAULT_JSON, PLAIN_JSON, 'application/octet-stream']);

function mediaRanges(accept: string): Array<{ type: string; q: number }> {
  return accept.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    const qp = params.find((p) => p.startsWith('q='));
    const q = qp ? Number(qp.slice(2)) : 1;
    return { type, q: Number.isFinite(q) ? q : 0 };
  }).filter((r) => r.type !== '');
}

function rangeMatches(range: string, type: string): boolean {
  if (range === '*/*' || range === '*') return true;
  if (range.endsWith('/*')) return type.startsWith(range.slice(0, -1));
  return range === type;
}

/**
 * The response type for an Accept header: the highest client q × server qs
 * (as JAX-RS picks it), v1 for no Accept, undefined when nothing it lists
 * can be produced (406).
 */
export function negotiate(accept: string | undefined): string | undefined {
  if (!accept || accept.trim() === '') return V1_JSON;
  const ranges = mediaRanges(accept);
  let best: string | undefined;
  let bestScore = 0;
  for (const [type, qs] of PRODUCES) {
    // The most specific matching range decides the client's q for this type.
    const matching = ranges.filter((r) => rangeMatches(r.type, type)).sort((x, y) => specificity(y.type) - specificity(x.type));
    const q = matching[0]?.q ?? 0;
    if (q * qs > bestScore) { best = type; bestScore = q * qs; }
  }
  return best;
}

function specificity(range: string): number {
  return range === '*/*' || range === '*' ? 0 : range.endsWith('/*') ? 1 : 2;
}

/** True when a request body's Content-Type is none Confluent consumes (415). A missing one is allowed. */
export function unsupportedContentType(contentType: string | undefined): boolean {
  if (!contentType || contentType.trim() === '') return false;
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  return !CONSUMES.has(type);
}

export function sendJson(req: FastifyRequest, reply: FastifyReply, body: unknown, status = 200): FastifyReply {
  return sendRaw(req, reply, JSON.stringify(body), status);
}

/** For the `/schema` endpoints: the stored schema text is already a JSON document and goes out untouched. */
// Sent as a Buffer so Fastify does not append "; charset=utf-8": Confluent's content type has none.
export function sendRaw(req: FastifyRequest, reply: FastifyReply, text: string, status = 200): FastifyReply {
  return reply.code(status).header('content-type', negotiate(req.headers.accept) ?? V1_JSON).send(Buffer.from(text, 'utf8'));
}

export function flag(query: unknown, name: string): boolean {
  const v = (query as Record<string, unknown> | undefined)?.[name];
  return typeof v === 'string' && v.trim().toLowerCase() === 'true';
}

export function stringParam(query: unknown, name: string): string | undefined {
  const v = (query as Record<string, unknown> | undefined)?.[name];
  return typeof v === 'string' ? v : undefined;
}

const MAX_INT = 2 ** 31 - 1;

/** An offset / limit value; one that is not an integer counts as absent (docs/registry.md). */
function pageParam(query: unknown, name: string, fallback: number): number {
  const v = stringParam(query, name);
  if (v === undefined || !/^-?\d+$/.test(v.trim())) return fallback;
  const n = Number(v);
  return name === 'offset' ? Math.max(0, n) : n;
}

/**
 * Confluent's paging of a listing: skip `offset`, then at most `limit`; a
 * limit of 0 or below is no limit (Confluent falls back to its default,
 * which is unbounded except for GET /schemas: see docs/registry.md).
 */
export function page<T>(query: unknown, items: T[]): T[] {
  const offset = pageParam(query, 'offset', 0);
  const limit = pageParam(query, 'limit', -1);
  return items.slice(offset, limit <= 0 ? undefined : offset + limit);
}

/** "latest" and -1 mean the latest version (returned as -1); otherwise 1..2^31-1, else 42202. */
export function parseVersion(raw: string): number {
  const v = raw.trim();
  if (v === 'latest') return -1;
  if (!/^-?\d+$/.test(v)) throw restErrors.invalidVersion(raw);
  const n = Number(v);
  if (n === -1) return -1;
  if (n < 1 || n > MAX_INT) throw restErrors.invalidVersion(raw);
  return n;
}

export function parseSchemaId(raw: string): number {
  if (!/^\d+$/.test(raw)) throw restErrors.schemaNotFound(raw);
  const n = Number(raw);
  if (n < 1 || n > MAX_INT) throw restErrors.schemaNotFound(raw);
  return n;
}

export function checkSubjectName(subject: string): void {
  // Confluent refuses ISO control characters in subject names.
  // eslint-disable-next-line no-control-regex
  if (subject.trim() === '' || /[\u0000-\u001f\u007f-\u009f]/.test(subject)) throw restErrors.invalidSubject(subject);
}

export interface SchemaRequest {
  schema: string;
  schemaType: string;
}

/** The body of register / lookup / compatibility requests: `{schema, schemaType?, references?}`. */
export function parseSchemaRequest(body: unknown): SchemaRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw restErrors.invalidSchema('the request body must be a JSON object with a "schema" string');
  }
  const b = body as Record<string, unknown>;
  if (typeof b.schema !== 'string' || b.schema.trim() === '') throw restErrors.invalidSchema('Empty schema');
  const schemaType = b.schemaType === undefined || b.schemaType === null ? 'AVRO' : String(b.schemaType).toUpperCase();
  if (!(SUPPORTED_SCHEMA_TYPES as readonly string[]).includes(schemaType)) {
    throw restErrors.invalidSchema(`schema type ${schemaType} is not supported; this registry supports ${SUPPORTED_SCHEMA_TYPES.join(', ')}`);
  }
  if (Array.isArray(b.references) && b.references.length > 0) {
    throw restErrors.invalidSchema('schema references are not supported by this registry');
  }
  return { schema: b.schema, schemaType };
}
