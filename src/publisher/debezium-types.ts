import { DecodeError } from '../errors.ts';
import type { Column } from '../source/change-event.ts';
import { civilFromDays, TS_INFINITY, TS_MINUS_INFINITY, Unavailable, type ColumnType, type ColumnValue, type ValueKind } from '../source/pg-values.ts';
import type { AvroWriter } from './avro-writer.ts';

/**
 * Postgres column -> Avro field, as Debezium's PostgreSQL connector does it
 * with its default settings (decimal.handling.mode=precise,
 * time.precision.mode=adaptive, binary.handling.mode=bytes) and the
 * Confluent Avro converter. See docs/encodings.md for the table.
 */
export type AvroSchema = string | { [k: string]: unknown } | AvroSchema[];

/** Debezium's stand-in for an unchanged TOASTed value (unavailable.value.placeholder). */
export const UNAVAILABLE_PLACEHOLDER = '__debezium_unavailable_value';
const PLACEHOLDER_BYTES = Buffer.from(UNAVAILABLE_PLACEHOLDER);

export class EncodeError extends DecodeError {}

type Write = (w: AvroWriter, v: ColumnValue) => void;

export interface ColumnCodec {
  /** The (non-null) Avro type of the column. */
  type: AvroSchema;
  /** Writes a non-null value. */
  write: Write;
}

const semantic = (type: string, name: string, extra: Record<string, unknown> = {}) => ({ type, ...extra, 'connect.version': 1, 'connect.name': name });

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Microseconds since the epoch -> 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (ZonedTimestamp, always 6 fraction digits). */
export function formatZonedTimestamp(us: bigint): string {
  if (us === TS_INFINITY) return 'infinity';
  if (us === TS_MINUS_INFINITY) return '-infinity';
  let days = us / 86_400_000_000n;
  let rem = us % 86_400_000_000n;
  if (rem < 0n) { rem += 86_400_000_000n; days -= 1n; }
  const [y, m, d] = civilFromDays(Number(days));
  const secsOfDay = Number(rem / 1_000_000n);
  const frac = String(rem % 1_000_000n).padStart(6, '0');
  const year = y >= 0 && y <= 9999 ? String(y).padStart(4, '0') : (y < 0 ? '-' : '+') + String(Math.abs(y)).padStart(6, '0');
  return `${year}-${pad2(m)}-${pad2(d)}T${pad2(Math.floor(secsOfDay / 3600))}:${pad2(Math.floor(secsOfDay / 60) % 60)}:${pad2(secsOfDay % 60)}.${frac}Z`;
}

const US_PER_DAY = 86_400_000_000;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const put2 = (b: Buffer, i: number, n: number) => { const t = Math.floor(n / 10); b[i] = 48 + t; b[i + 1] = 48 + (n - t * 10); };

/**
 * w.string(formatZonedTimestamp(us)), written as bytes without making the
 * string when the instant is exact as a double (years ~1685-2254), which is
 * every timestamp of a live table; anything else takes the string path.
 */
export function writeZonedTimestamp(w: AvroWriter, us: bigint): void {
  if (us > SAFE || us < -SAFE) { w.string(formatZonedTimestamp(us)); return; }
  const n = Number(us);
  const days = Math.floor(n / US_PER_DAY);
  const rem = n - days * US_PER_DAY;
  const [y, m, d] = civilFromDays(days);
  const secs = Math.floor(rem / 1_000_000);
  let frac = rem - secs * 1_000_000;
  // 'YYYY-MM-DDTHH:MM:SS.ffffffZ': 27 ASCII characters after the length (zig-zag 54)
  const at = w.claim(28);
  const b = w.buf;
  b[at] = 54;
  put2(b, at + 1, Math.floor(y / 100)); put2(b, at + 3, y % 100); b[at + 5] = 0x2d;
  put2(b, at + 6, m); b[at + 8] = 0x2d;
  put2(b, at + 9, d); b[at + 11] = 0x54;
  put2(b, at + 12, Math.floor(secs / 3600)); b[at + 14] = 0x3a;
  put2(b, at + 15, Math.floor(secs / 60) % 60); b[at + 17] = 0x3a;
  put2(b, at + 18, secs % 60); b[at + 20] = 0x2e;
  for (let k = at + 26; k > at + 20; k--) { const q = Math.floor(frac / 10); b[k] = 48 + (frac - q * 10); frac = q; }
  b[at + 27] = 0x5a;
}

/** Unscaled integer of a decimal string at `scale`, or a loud error if it cannot be represented exactly. */
export function unscaled(text: string, scale: number): bigint {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new EncodeError(`numeric value "${text}" has no Avro decimal representation`);
  const frac = m[3] ?? '';
  if (frac.length > scale && /[^0]/.test(frac.slice(scale))) throw new EncodeError(`numeric value "${text}" has more than ${scale} fraction digits`);
  const digits = m[2]! + frac.slice(0, scale).padEnd(scale, '0');
  const n = BigInt(digits);
  return m[1] ? -n : n;
}

/** Big-endian two's complement, minimal length (java.math.BigInteger.toByteArray). */
export function twosComplement(n: bigint): Buffer {
  let len = 1;
  while (n >= 1n << BigInt(8 * len - 1) || n < -(1n << BigInt(8 * len - 1))) len++;
  const v = n < 0n ? (1n << BigInt(8 * len)) + n : n;
  return Buffer.from(v.toString(16).padStart(len * 2, '0'), 'hex');
}

function placeholderOr(write: Write, asBytes: boolean): Write {
  return (w, v) => {
    if (v instanceof Unavailable) {
      if (asBytes) w.bytes(PLACEHOLDER_BYTES);
      else w.string(UNAVAILABLE_PLACEHOLDER);
      return;
    }
    write(w, v);
  };
}

function unavailableImpossible(col: string, write: Write): Write {
  return (w, v) => {
    if (v instanceof Unavailable) throw new EncodeError(`column ${col}: an unchanged TOAST marker for a type that cannot be TOASTed`);
    write(w, v);
  };
}

function scalarCodec(col: string, t: ColumnType): ColumnCodec {
  const kind: ValueKind = t.kind;
  switch (kind) {
    case 'bool': return { type: 'boolean', write: unavailableImpossible(col, (w, v) => w.bool(v as boolean)) };
    case 'int16': return { type: { type: 'int', 'connect.type': 'int16' }, write: unavailableImpossible(col, (w, v) => w.long(v as number)) };
    case 'int32': return { type: 'int', write: unavailableImpossible(col, (w, v) => w.long(v as number)) };
    case 'int64': return { type: 'long', write: unavailableImpossible(col, (w, v) => w.long(v as bigint)) };
    case 'float32': return { type: 'float', write: unavailableImpossible(col, (w, v) => w.float(v as number)) };
    case 'float64': return { type: 'double', write: unavailableImpossible(col, (w, v) => w.double(v as number)) };
    case 'date': return { type: semantic('int', 'io.debezium.time.Date'), write: unavailableImpossible(col, (w, v) => w.long(v as number)) };
    case 'timestamp': return { type: semantic('long', 'io.debezium.time.MicroTimestamp'), write: unavailableImpossible(col, (w, v) => w.long(v as bigint)) };
    case 'time': return { type: semantic('long', 'io.debezium.time.MicroTime'), write: unavailableImpossible(col, (w, v) => w.long(v as bigint)) };
    case 'timestamptz': return { type: semantic('string', 'io.debezium.time.ZonedTimestamp'), write: unavailableImpossible(col, (w, v) => writeZonedTimestamp(w, v as bigint)) };
    case 'timetz': return { type: semantic('string', 'io.debezium.time.ZonedTime'), write: placeholderOr((w, v) => w.string(v as string), false) };
    case 'json': return { type: semantic('string', 'io.debezium.data.Json'), write: placeholderOr((w, v) => w.string(v as string), false) };
    case 'uuid': return { type: semantic('string', 'io.debezium.data.Uuid'), write: unavailableImpossible(col, (w, v) => w.string(v as string)) };
    case 'bytea': return { type: 'bytes', write: placeholderOr((w, v) => w.bytes(v as Buffer), true) };
    case 'numeric': {
      if (t.scale !== undefined && t.precision !== undefined) {
        const scale = t.scale;
        return {
          type: {
            type: 'bytes', scale, precision: t.precision, 'connect.version': 1,
            'connect.parameters': { scale: String(scale), 'connect.decimal.precision': String(t.precision) },
            'connect.name': 'org.apache.kafka.connect.data.Decimal', logicalType: 'decimal',
          },
          write: placeholderOr((w, v) => { if (!w.decimal(v as string, scale)) w.bytes(twosComplement(unscaled(v as string, scale))); }, true),
        };
      }
      return {
        type: {
          type: 'record', name: 'VariableScaleDecimal', namespace: 'io.debezium.data',
          fields: [{ name: 'scale', type: 'int' }, { name: 'value', type: 'bytes' }],
          'connect.doc': 'Variable scaled decimal', 'connect.version': 1, 'connect.name': 'io.debezium.data.VariableScaleDecimal',
        },
        write: unavailableImpossible(col, (w, v) => {
          const s = v as string;
          const scale = s.includes('.') ? s.length - s.indexOf('.') - 1 : 0;
          w.long(scale);
          if (!w.decimal(s, scale)) w.bytes(twosComplement(unscaled(s, scale)));
        }),
      };
    }
    default: return { type: 'string', write: placeholderOr((w, v) => w.string(v as string), false) };
  }
}

/**
 * The codec for one column. `seenTypes` names record types already emitted
 * in this schema: Avro allows defining a named type once, later uses must
 * refer to it by name.
 */
export function columnCodec(col: Column, seenTypes: Set<string>): ColumnCodec {
  const c = scalarCodec(col.name, col.type);
  let type = c.type;
  if (typeof type === 'object' && !Array.isArray(type) && type.type === 'record') {
    const full = `${type.namespace as string}.${type.name as string}`;
    if (seenTypes.has(full)) type = full;
    seenTypes.add(full);
  }
  if (!col.type.isArray) return { type, write: c.write };
  // Debezium's array elements are optional: ["null", T].
  const placeholderFits = ['text', 'json', 'uuid', 'bytea', 'unknown', 'timetz'].includes(col.type.kind) || (col.type.kind === 'numeric' && col.type.scale !== undefined);
  const writeItems: Write = (w, v) => {
    if (v instanceof Unavailable) {
      // Avro string and bytes share one binary form, so the placeholder fits any string- or bytes-typed item.
      if (!placeholderFits) throw new EncodeError(`column ${col.name}: unchanged TOASTed ${col.type.kind}[] has no placeholder form`);
      w.long(1); w.long(1); w.string(UNAVAILABLE_PLACEHOLDER); w.long(0);
      return;
    }
    const arr = v as ColumnValue[];
    if (arr.length > 0) {
      w.long(arr.length);
      for (const item of arr) {
        if (Array.isArray(item)) throw new EncodeError(`column ${col.name}: multi-dimensional arrays are not supported`);
        if (item === null) w.long(0);
        else { w.long(1); c.write(w, item); }
      }
    }
    w.long(0);
  };
  return { type: { type: 'array', items: ['null', type] }, write: writeItems };
}
