import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { UnavailableError, errorMessage } from '../errors.ts';
import { canonicalInstant } from '../transforms/time.ts';
import { decimalFromBytes } from './avro.ts';

/**
 * Columns a source table has beyond the ones the warehouse models
 * (tables.ts): a column added after the pipeline was built. Staging follows
 * them (docs/consumers.md, "Schema changes"): each gets a Postgres type from
 * its Avro/Debezium type, and its decoded values a text form that type reads.
 */
export interface ExtraColumn {
  name: string;
  /** The Postgres type staging gives the column. */
  sqlType: string;
  /** Decoded Avro value → text Postgres casts to sqlType (null stays null). */
  normalise: (v: unknown) => string | null;
}

type Json = Record<string, unknown>;

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

function microsToLocal(us: bigint): string {
  const ms = us / 1000n - (us % 1000n < 0n ? 1n : 0n);
  const d = new Date(Number(ms));
  const frac = ((us % 1_000_000n) + 1_000_000n) % 1_000_000n;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${frac.toString().padStart(6, '0')}`;
}

function daysToDate(days: number): string {
  return new Date(days * 86_400_000).toISOString().slice(0, 10);
}

function microsToTime(us: bigint): string {
  const s = us / 1_000_000n;
  return `${pad(Number(s / 3600n))}:${pad(Number((s / 60n) % 60n))}:${pad(Number(s % 60n))}.${(us % 1_000_000n).toString().padStart(6, '0')}`;
}

const big = (v: unknown) => (typeof v === 'bigint' ? v : BigInt(v as number));
const text = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x)) : String(v));

/** The Postgres type and value form of one Avro field type (a Debezium column). */
export function columnOf(name: string, avroType: unknown): ExtraColumn {
  let t = avroType;
  if (Array.isArray(t)) t = t.find((x) => x !== 'null') ?? 'string';
  const s: Json = typeof t === 'string' ? { type: t } : (t as Json);
  const connect = typeof s['connect.name'] === 'string' ? s['connect.name'] : '';
  const col = (sqlType: string, normalise: (v: unknown) => string | null): ExtraColumn => ({ name, sqlType, normalise: (v) => (v === null || v === undefined ? null : normalise(v)) });
  if (s.type === 'record' && connect === 'io.debezium.data.VariableScaleDecimal') {
    return col('numeric', (v) => { const r = v as { value: Buffer; scale: number }; return decimalFromBytes(r.value, Number(r.scale)); });
  }
  if (s.logicalType === 'decimal') return col('numeric', text);
  switch (connect) {
    case 'io.debezium.time.Date': return col('date', (v) => daysToDate(Number(v)));
    case 'io.debezium.time.MicroTimestamp': return col('timestamp', (v) => microsToLocal(big(v)));
    case 'io.debezium.time.Timestamp': return col('timestamp', (v) => microsToLocal(big(v) * 1000n));
    case 'io.debezium.time.NanoTimestamp': return col('timestamp', (v) => microsToLocal(big(v) / 1000n));
    case 'io.debezium.time.MicroTime': return col('time', (v) => microsToTime(big(v)));
    case 'io.debezium.time.ZonedTimestamp': return col('timestamptz', (v) => canonicalInstant(String(v)) ?? String(v));
    case 'io.debezium.time.ZonedTime': return col('timetz', text);
    case 'io.debezium.data.Json': return col('jsonb', text);
    case 'io.debezium.data.Uuid': return col('uuid', text);
    default: break;
  }
  switch (s.type) {
    case 'boolean': return col('boolean', (v) => (v ? 'true' : 'false'));
    case 'int': return col(s['connect.type'] === 'int16' ? 'smallint' : 'int', (v) => big(v).toString());
    case 'long': return col('bigint', (v) => big(v).toString());
    case 'float': return col('real', (v) => String(v));
    case 'double': return col('double precision', (v) => String(v));
    case 'bytes': return col('bytea', (v) => `\\x${Buffer.from(v as Buffer).toString('hex')}`);
    case 'array': return col('jsonb', text);
    default: return col('text', text);
  }
}

/** The registry client's raw-schema request (public in its JavaScript, not in its typings). */
interface RawSchemaSource {
  getSchemaOriginRequest(id: number): Promise<{ data(): { schema: string } }>;
}

/** The fields of the envelope's row record (`before`/`after`) from its exported schema. */
function rowFields(envelope: Json): Array<{ name: string; type: unknown }> {
  const fields = (envelope.fields as Array<{ name: string; type: unknown }> | undefined) ?? [];
  for (const f of fields.filter((x) => x.name === 'before' || x.name === 'after')) {
    const branches = Array.isArray(f.type) ? f.type : [f.type];
    const rec = branches.find((b) => typeof b === 'object' && b !== null && (b as Json).type === 'record') as Json | undefined;
    if (rec) return rec.fields as Array<{ name: string; type: unknown }>;
  }
  return [];
}

/**
 * The extra columns of a message's writer schema, by schema id (the
 * registry client caches the schemas; this caches the mapping).
 */
export class ExtraColumnResolver {
  private readonly byId = new Map<number, ExtraColumn[]>();

  constructor(private readonly registry: SchemaRegistry) {}

  async forMessage(buf: Buffer): Promise<ExtraColumn[]> {
    if (buf.length < 5 || buf[0] !== 0) return [];
    const id = buf.readInt32BE(1);
    const known = this.byId.get(id);
    if (known) return known;
    // The raw schema, not avsc's Type: avsc drops attributes of primitive
    // types (connect.name), which tell a ZonedTimestamp from a string.
    let raw: Json;
    try {
      raw = JSON.parse((await (this.registry as unknown as RawSchemaSource).getSchemaOriginRequest(id)).data().schema) as Json;
    } catch (err) {
      throw new UnavailableError('SCHEMA_REGISTRY', `schema registry failed fetching id ${id}: ${errorMessage(err)}`, { cause: err });
    }
    const extras = extraColumnsOfSchema(raw);
    this.byId.set(id, extras);
    return extras;
  }
}

/** Every column of an envelope schema's row record; validateEnvelope keeps those its table's spec does not model. */
export function extraColumnsOfSchema(envelope: Json): ExtraColumn[] {
  return rowFields(envelope).map((f) => columnOf(f.name, f.type));
}
