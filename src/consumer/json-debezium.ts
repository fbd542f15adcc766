import { DecodeError } from '../errors.ts';
import { formatInstantUs } from '../transforms/time.ts';
import { decimalFromBytes } from './avro.ts';
import { JsonNumber, parseJsonBytes, type JsonValue } from './json-parse.ts';
import { TABLES, isTableName, type ColumnKind } from './tables.ts';

/**
 * Debezium's envelope as Kafka Connect's JsonConverter writes it, with the
 * `{"schema":…,"payload":…}` wrapper (schemas.enable=true) or without it
 * (schemas.enable=false), decoded to the same shape the Avro decoder gives
 * (src/consumer/avro.ts): int64 → bigint, decimals → exact decimal strings,
 * ZonedTimestamp → its ISO string; so validateEnvelope and everything after
 * it do not know which format a change came in. Accepted encodings and what
 * is refused: docs/consumers.md "Input formats".
 */
export interface JsonDecodeOptions {
  /**
   * Scale of each numeric column, `table.column` → digits after the point.
   * Used only where the message does not say: base64 decimals without the
   * schema wrapper, and `decimal.handling.mode=double` values.
   */
  decimalScales: Readonly<Record<string, number>>;
}

type Obj = { [k: string]: JsonValue };
/** Kafka Connect's JSON form of a schema (JsonConverter `schema`). */
interface ConnectSchema {
  type: string;
  name?: string;
  optional?: boolean;
  field?: string;
  fields?: ConnectSchema[];
  items?: ConnectSchema;
  keys?: ConnectSchema;
  values?: ConnectSchema;
  parameters?: Record<string, string>;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const PLAIN_DECIMAL = /^-?\d+(\.\d+)?$/;
const NUMBER_TEXT = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}

function fail(where: string, msg: string): never {
  throw new DecodeError(`${where}: ${msg}`);
}

function isWrapped(v: JsonValue): v is { schema: JsonValue; payload: JsonValue } {
  if (!isObj(v) || !('payload' in v) || !('schema' in v)) return false;
  const keys = Object.keys(v);
  return keys.length === 2 && (v.schema === null || (isObj(v.schema) && typeof v.schema.type === 'string'));
}

function base64Bytes(s: string, where: string): Buffer {
  if (!BASE64.test(s)) fail(where, 'is not base64');
  return Buffer.from(s, 'base64');
}

/** Exact decimal text (plain or with an exponent) → plain decimal string, no rounding. */
function plainDecimal(text: string, where: string): string {
  const m = NUMBER_TEXT.exec(text);
  if (!m) fail(where, `${JSON.stringify(text)} is not a decimal`);
  const [, sign, int, frac = '', exp = '0'] = m;
  const e = Number(exp);
  let digits = int! + frac;
  let point = int!.length + e;
  if (point <= 0) { digits = '0'.repeat(1 - point) + digits; point = 1; }
  if (point > digits.length) digits = digits.padEnd(point, '0');
  const i = digits.slice(0, point).replace(/^0+(?=\d)/, '');
  const f = digits.slice(point);
  return `${sign}${i}${f ? `.${f}` : ''}`;
}

/** A decimal string at exactly `scale` fraction digits; refuses to drop non-zero digits. */
function atScale(plain: string, scale: number, where: string): string {
  const [i, f = ''] = plain.split('.');
  if (f.length > scale && /[1-9]/.test(f.slice(scale))) fail(where, `${plain} has more than ${scale} decimals`);
  const frac = f.slice(0, scale).padEnd(scale, '0');
  return scale > 0 ? `${i}.${frac}` : i!;
}

/**
 * A `decimal.handling.mode=double` value: accepted only where the double
 * provably holds the decimal exactly. Every decimal of at most 15 significant
 * digits maps to a distinct double (DBL_DIG), so a printed double with at
 * most 15 significant digits and at most `scale` decimals is the column's
 * value; anything longer may have been rounded and is refused.
 */
function fromDouble(n: JsonNumber, scale: number | undefined, where: string): string {
  if (scale === undefined) fail(where, 'a double decimal (decimal.handling.mode=double) needs the column scale in CONSUMER_DECIMAL_SCALES');
  const plain = plainDecimal(n.raw, where);
  const sig = plain.replace(/^-/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  if (sig.length > 15) fail(where, `double ${n.raw} has more than 15 significant digits, so it may be rounded; use decimal.handling.mode=precise or string`);
  return atScale(plain, scale, where);
}

function variableScale(v: JsonValue, where: string): string {
  if (!isObj(v) || !(v.scale instanceof JsonNumber) || typeof v.value !== 'string') fail(where, 'is not a VariableScaleDecimal {scale, value}');
  return decimalFromBytes(base64Bytes(v.value, where), Number((v.scale as JsonNumber).toBigint()));
}

/** A numeric column's value, from the field schema when the message has one, else by its JSON shape. */
function numericValue(v: JsonValue, schema: ConnectSchema | undefined, scale: number | undefined, where: string): string {
  if (schema?.name === 'org.apache.kafka.connect.data.Decimal') {
    const s = Number(schema.parameters?.scale ?? 'NaN');
    if (!Number.isInteger(s)) fail(where, 'Decimal schema without an integer scale parameter');
    if (typeof v === 'string') return decimalFromBytes(base64Bytes(v, where), s);
    if (v instanceof JsonNumber) return atScale(plainDecimal(v.raw, where), s, where); // JsonConverter decimal.format=NUMERIC
    return fail(where, 'Decimal is neither base64 nor a number');
  }
  if (schema?.name === 'io.debezium.data.VariableScaleDecimal') return variableScale(v, where);
  if (typeof v === 'string') {
    // decimal.handling.mode=string writes the column's scale (toPlainString), so
    // a string with a point is text; digits alone are text only at scale 0.
    if (schema?.type === 'string' || (PLAIN_DECIMAL.test(v) && (v.includes('.') || scale === 0))) {
      if (!PLAIN_DECIMAL.test(v)) fail(where, `${JSON.stringify(v)} is not a decimal`);
      return v;
    }
    if (scale === undefined) fail(where, 'a base64 decimal without its schema needs the column scale (CONSUMER_DECIMAL_SCALES)');
    return decimalFromBytes(base64Bytes(v, where), scale);
  }
  if (v instanceof JsonNumber) return fromDouble(v, scale, where);
  if (isObj(v)) return variableScale(v, where);
  return fail(where, 'is not a decimal');
}

function isoFromUnit(n: bigint, unitsPerUs: bigint, usPerUnit: bigint, where: string): string {
  if (unitsPerUs > 1n && n % unitsPerUs !== 0n) fail(where, 'nanoseconds beyond Postgres precision');
  return formatInstantUs(unitsPerUs > 1n ? n / unitsPerUs : n * usPerUnit);
}

/** A timestamptz column: ZonedTimestamp text; epoch numbers only when the schema names their unit. */
function instantValue(v: JsonValue, schema: ConnectSchema | undefined, where: string): string {
  if (typeof v === 'string') return v;
  if (!(v instanceof JsonNumber) || !v.isInteger) fail(where, 'must be an ISO timestamp string (io.debezium.time.ZonedTimestamp)');
  const n = v.toBigint();
  switch (schema?.name) {
    case 'io.debezium.time.MicroTimestamp': return isoFromUnit(n, 1n, 1n, where);
    case 'io.debezium.time.NanoTimestamp': return isoFromUnit(n, 1000n, 1n, where);
    case 'io.debezium.time.Timestamp':
    case 'org.apache.kafka.connect.data.Timestamp': return isoFromUnit(n, 1n, 1000n, where);
    default: return fail(where, 'an epoch-number timestamp without a schema naming its unit; enable schemas or use a timestamptz column (ZonedTimestamp)');
  }
}

function columnValue(kind: ColumnKind, v: JsonValue, schema: ConnectSchema | undefined, scale: number | undefined, where: string): unknown {
  if (v === null) return null;
  switch (kind) {
    case 'bigint':
    case 'int':
      if (!(v instanceof JsonNumber) || !v.isInteger) return fail(where, 'must be an integer');
      return v.toBigint();
    case 'text':
      return typeof v === 'string' ? v : fail(where, 'must be a string');
    case 'numeric': return numericValue(v, schema, scale, where);
    case 'timestamptz': return instantValue(v, schema, where);
  }
}

/** Any value by its Connect schema, or (schemaless) by its JSON shape: integers → bigint. */
function generic(v: JsonValue, schema: ConnectSchema | undefined, where: string): unknown {
  if (v === null) return null;
  if (v instanceof JsonNumber) {
    if (schema && ['float', 'double', 'float32', 'float64'].includes(schema.type)) return v.toNumber();
    if (schema && ['int8', 'int16', 'int32'].includes(schema.type)) return v.toNumber();
    return v.isInteger ? v.toBigint() : v.toNumber();
  }
  if (Array.isArray(v)) return v.map((x, i) => generic(x, schema?.items, `${where}[${i}]`));
  if (isObj(v)) {
    if (schema?.type === 'struct') {
      const out: Record<string, unknown> = {};
      for (const f of schema.fields ?? []) out[f.field!] = generic(v[f.field!] ?? null, f, `${where}.${f.field}`);
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = generic(x, schema?.values, `${where}.${k}`);
    return out;
  }
  if (typeof v === 'string' && schema?.type === 'bytes') return base64Bytes(v, where);
  return v;
}

function fieldsOf(schema: ConnectSchema | undefined): Map<string, ConnectSchema> {
  return new Map((schema?.fields ?? []).map((f) => [f.field!, f]));
}

/** A before/after image (or a key) of a known table: columns by their kind, the rest generically. */
function row(table: string | undefined, v: JsonValue, schema: ConnectSchema | undefined, opts: JsonDecodeOptions, where: string): unknown {
  if (v === null || v === undefined) return null;
  if (!isObj(v)) fail(where, 'must be an object');
  if (!isTableName(table)) return generic(v, schema, where);
  const spec = TABLES[table];
  const fields = fieldsOf(schema);
  const out: Record<string, unknown> = {};
  for (const [col, x] of Object.entries(v)) {
    const kind = spec.columns[col];
    const f = fields.get(col);
    out[col] = kind ? columnValue(kind, x, f, opts.decimalScales[`${table}.${col}`], `${where}.${col}`) : generic(x, f, `${where}.${col}`);
  }
  return out;
}

function unwrap(buf: Buffer): { payload: JsonValue; schema: ConnectSchema | undefined } {
  const doc = parseJsonBytes(buf);
  if (isWrapped(doc)) return { payload: doc.payload, schema: (doc.schema ?? undefined) as unknown as ConnectSchema | undefined };
  return { payload: doc, schema: undefined };
}

/** One JsonConverter message value → the Debezium envelope, in the Avro decoder's shape. */
export function decodeDebeziumJson(buf: Buffer, opts: JsonDecodeOptions): unknown {
  const { payload, schema } = unwrap(buf);
  if (payload === null) return null;
  if (!isObj(payload)) fail('value', 'is not a Debezium envelope object');
  const fields = fieldsOf(schema);
  const source = generic(payload.source ?? null, fields.get('source'), 'source') as Record<string, unknown> | null;
  const table = typeof source?.table === 'string' ? source.table : undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(payload)) {
    if (k === 'source') out.source = source;
    else if (k === 'before' || k === 'after') out[k] = row(table, v, fields.get(k), opts, k);
    else out[k] = generic(v, fields.get(k), k);
  }
  return out;
}

/**
 * A JsonConverter message key. Debezium's topic names the table, the key
 * does not, so the caller passes it (`<prefix>.<schema>.<table>`).
 */
export function decodeDebeziumJsonKey(buf: Buffer, table: string | undefined, opts: JsonDecodeOptions): unknown {
  const { payload, schema } = unwrap(buf);
  return row(table, payload, schema, opts, 'key');
}
