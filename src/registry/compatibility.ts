import { createHash } from 'node:crypto';
import avsc from 'avsc';

/**
 * Pure schema logic of the registry: parsing, identity (canonical form) and
 * compatibility by Avro schema resolution. No I/O, so it is unit-tested alone.
 */

export const COMPATIBILITY_LEVELS = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
] as const;
export type CompatibilityLevel = (typeof COMPATIBILITY_LEVELS)[number];

/** Confluent matches level names case-insensitively. */
export function parseCompatibilityLevel(value: unknown): CompatibilityLevel | undefined {
  if (typeof value !== 'string') return undefined;
  const upper = value.trim().toUpperCase();
  return (COMPATIBILITY_LEVELS as readonly string[]).includes(upper) ? (upper as CompatibilityLevel) : undefined;
}

export const SUPPORTED_SCHEMA_TYPES = ['AVRO'] as const;

export interface ParsedSchema {
  type: avsc.Type;
  /** Key-sorted JSON with schema-position shorthands collapsed: equal for schemas that differ only in layout. */
  canonical: string;
  /** sha256 of schema type + canonical form; the identity used to share global ids. */
  fingerprint: string;
}

export type ParseResult = { ok: true; schema: ParsedSchema } | { ok: false; reason: string };

export function parseAvroSchema(text: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not valid JSON: ${(err as Error).message}` };
  }
  let type: avsc.Type;
  try {
    // A fresh registry per parse: named types from one schema must never leak into another.
    type = avsc.Type.forSchema(json as avsc.Schema, { registry: {} });
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  const canonical = JSON.stringify(normaliseSchema(json));
  return { ok: true, schema: { type, canonical, fingerprint: fingerprintOf('AVRO', canonical) } };
}

export function fingerprintOf(schemaType: string, canonical: string): string {
  return createHash('sha256').update(`${schemaType}\n${canonical}`).digest('hex');
}

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);

/**
 * Walks schema positions only (type, items, values, fields[].type, union
 * branches) so that `{"type":"int"}` and `"int"` compare equal there, while a
 * field default that happens to look like a schema is left alone as data.
 */
function normaliseSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(normaliseSchema);
  if (!isObject(node)) return node;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(node).sort()) {
    const value = node[key];
    if (key === 'type' || key === 'items' || key === 'values') out[key] = normaliseSchema(value);
    else if (key === 'fields' && Array.isArray(value)) out[key] = value.map(normaliseField);
    else out[key] = sortKeysDeep(value);
  }
  const keys = Object.keys(out);
  if (keys.length === 1 && typeof out.type === 'string' && PRIMITIVES.has(out.type)) return out.type;
  return out;
}

function normaliseField(field: unknown): unknown {
  if (!isObject(field)) return field;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(field).sort()) {
    out[key] = key === 'type' ? normaliseSchema(field[key]) : sortKeysDeep(field[key]);
  }
  return out;
}

function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (!isObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) out[key] = sortKeysDeep(value[key]);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface PreviousSchema {
  version: number;
  type: avsc.Type;
}

/**
 * Checks a candidate schema against the subject's live versions (oldest
 * first) and returns why it is incompatible; an empty list means compatible.
 * BACKWARD: the new schema, as reader, must resolve data written with the old.
 * FORWARD: the old schema, as reader, must resolve data written with the new.
 * Non-transitive levels look only at the latest version, transitive at all.
 */
export function checkCompatibility(candidate: avsc.Type, previous: readonly PreviousSchema[], level: CompatibilityLevel): string[] {
  const against = versionsToCheck(previous, level);
  const backward = level.startsWith('BACKWARD') || level.startsWith('FULL');
  const forward = level.startsWith('FORWARD') || level.startsWith('FULL');
  const messages: string[] = [];
  for (const old of [...against].reverse()) {
    if (backward) {
      const why = resolveError(candidate, old.type);
      if (why) messages.push(`${level}: the new schema cannot read data written with version ${old.version}: ${why}`);
    }
    if (forward) {
      const why = resolveError(old.type, candidate);
      if (why) messages.push(`${level}: version ${old.version} cannot read data written with the new schema: ${why}`);
    }
  }
  return messages;
}

/** The versions a level compares against (oldest first), so callers parse only those. */
export function versionsToCheck<T>(previous: readonly T[], level: CompatibilityLevel): readonly T[] {
  if (level === 'NONE') return [];
  return level.endsWith('_TRANSITIVE') ? previous : previous.slice(-1);
}

function resolveError(reader: avsc.Type, writer: avsc.Type): string | undefined {
  try {
    reader.createResolver(writer);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
