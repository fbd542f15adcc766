import type { FastifyReply, FastifyRequest } from 'fastify';
import { SUPPORTED_SCHEMA_TYPES } from './compatibility.ts';
import { restErrors } from './errors.ts';

/** Request/response helpers shared by the route files: content negotiation and Confluent's parameter rules. */

export const V1_JSON = 'application/vnd.schemaregistry.v1+json';
const DEFAULT_JSON = 'application/vnd.schemaregistry+json';
const PLAIN_JSON = 'application/json';

/** Confluent prefers its v1 type and answers plain JSON only to clients that ask for nothing else. */
export function negotiate(accept: string | undefined): string {
  if (!accept) return V1_JSON;
  const a = accept.toLowerCase();
  if (a.includes(V1_JSON) || a.includes('*/*') || a.includes('application/*')) return V1_JSON;
  if (a.includes(DEFAULT_JSON)) return DEFAULT_JSON;
  if (a.includes(PLAIN_JSON)) return PLAIN_JSON;
  return V1_JSON;
}

export function sendJson(req: FastifyRequest, reply: FastifyReply, body: unknown, status = 200): FastifyReply {
  return sendRaw(req, reply, JSON.stringify(body), status);
}

/** For the `/schema` endpoints: the stored schema text is already a JSON document and goes out untouched. */
// Sent as a Buffer so Fastify does not append "; charset=utf-8": Confluent's content type has none.
export function sendRaw(req: FastifyRequest, reply: FastifyReply, text: string, status = 200): FastifyReply {
  return reply.code(status).header('content-type', negotiate(req.headers.accept)).send(Buffer.from(text, 'utf8'));
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
