import { DecodeError } from '../errors.ts';

/**
 * Typed column values and the parsers from Postgres' text output (what
 * pgoutput sends for proto v1) into them. The representation keeps every
 * value exact: int8 as bigint, numeric as a decimal string, timestamps as
 * bigint microseconds since the Unix epoch (pg's default JS parsing would
 * turn them into Dates and lose the microseconds).
 */

/** An unchanged TOASTed column in an update: Postgres did not send it. Never confuse it with null. */
export class Unavailable {
  static readonly instance = new Unavailable();
  private constructor() {}
  toString(): string {
    return '__debezium_unavailable_value';
  }
}
export const UNAVAILABLE = Unavailable.instance;

export type ScalarValue = null | boolean | number | bigint | string | Buffer;
export type ColumnValue = ScalarValue | Unavailable | ColumnValue[];

/** How a column's values are represented; drives both parsing and the Avro mapping. */
export type ValueKind =
  | 'bool' | 'int16' | 'int32' | 'int64' | 'float32' | 'float64'
  | 'numeric' | 'text' | 'json' | 'uuid' | 'bytea'
  | 'date' | 'timestamp' | 'timestamptz' | 'time' | 'timetz' | 'unknown';

export interface ColumnType {
  kind: ValueKind;
  /** Set for array columns: values are (possibly nested) arrays of `kind`. */
  isArray: boolean;
  /** numeric(p,s): precision and scale; undefined for unconstrained numeric. */
  precision?: number;
  scale?: number;
}

// Built-in type OIDs (pg_type.h). Anything else (enums, domains, citext, ...)
// is carried as its text form.
const SCALAR_OIDS: Record<number, ValueKind> = {
  16: 'bool', 17: 'bytea', 18: 'text', 19: 'text', 20: 'int64', 21: 'int16', 23: 'int32', 25: 'text', 26: 'int64',
  114: 'json', 700: 'float32', 701: 'float64', 1042: 'text', 1043: 'text', 1082: 'date', 1083: 'time',
  1114: 'timestamp', 1184: 'timestamptz', 1266: 'timetz', 1700: 'numeric', 2950: 'uuid', 3802: 'json',
};
const ARRAY_OIDS: Record<number, ValueKind> = {
  1000: 'bool', 1001: 'bytea', 1002: 'text', 1003: 'text', 1005: 'int16', 1007: 'int32', 1009: 'text', 1014: 'text', 1015: 'text',
  1016: 'int64', 1021: 'float32', 1022: 'float64', 199: 'json', 3807: 'json', 1182: 'date', 1183: 'time',
  1115: 'timestamp', 1185: 'timestamptz', 1270: 'timetz', 1231: 'numeric', 2951: 'uuid', 1028: 'int64',
};

export function columnType(typeOid: number, typeMod: number): ColumnType {
  const scalar = SCALAR_OIDS[typeOid];
  const element = scalar ?? ARRAY_OIDS[typeOid];
  const t: ColumnType = { kind: element ?? 'unknown', isArray: scalar === undefined && element !== undefined };
  if (t.kind === 'numeric' && typeMod >= 4) {
    t.precision = ((typeMod - 4) >> 16) & 0xffff;
    t.scale = (typeMod - 4) & 0xffff;
  }
  return t;
}

const PG_EPOCH_DAYS = 10957; // 2000-01-01 in days since 1970-01-01
export const PG_EPOCH_MICROS = BigInt(PG_EPOCH_DAYS) * 86_400_000_000n;
/** Postgres' own sentinels for +/-infinity timestamps (DT_NOEND / DT_NOBEGIN). */
export const TS_INFINITY = 9223372036854775807n;
export const TS_MINUS_INFINITY = -9223372036854775808n;

/** Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); valid for any year. */
export function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

export function civilFromDays(z: number): [number, number, number] {
  z += 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp + (mp < 10 ? 3 : -9);
  return [era * 400 + yoe + (m <= 2 ? 1 : 0), m, d];
}

const DATE_RE = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;
const TS_RE = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$/;
const TIME_RE = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/;

function yearOf(text: string, bc: string | undefined): number {
  const y = Number(text);
  return bc ? 1 - y : y; // 1 BC is astronomical year 0
}

export function parseDate(text: string): number {
  if (text === 'infinity') return Number.MAX_SAFE_INTEGER;
  if (text === '-infinity') return Number.MIN_SAFE_INTEGER;
  const m = DATE_RE.exec(text);
  if (!m) throw new DecodeError(`not a date: "${text}"`);
  return daysFromCivil(yearOf(m[1]!, m[4]), Number(m[2]), Number(m[3]));
}

function fraction(text: string | undefined): bigint {
  return text ? BigInt(text.padEnd(6, '0')) : 0n;
}

/** timestamp / timestamptz text (ISO DateStyle) -> microseconds since the Unix epoch, UTC. */
export function parseTimestamp(text: string): bigint {
  if (text === 'infinity') return TS_INFINITY;
  if (text === '-infinity') return TS_MINUS_INFINITY;
  const m = TS_RE.exec(text);
  if (!m) throw new DecodeError(`not a timestamp: "${text}"`);
  const days = daysFromCivil(yearOf(m[1]!, m[12]), Number(m[2]), Number(m[3]));
  let secs = days * 86400 + Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]);
  if (m[8]) {
    const off = Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0);
    secs -= m[8] === '+' ? off : -off;
  }
  return BigInt(secs) * 1_000_000n + fraction(m[7]);
}

const d2 = (buf: Buffer, i: number) => (buf[i]! - 48) * 10 + (buf[i + 1]! - 48);
const isDigit = (c: number | undefined) => c !== undefined && c >= 48 && c <= 57;
/** Where 'YYYY-MM-DD HH:MM:SS' has digits. */
const TS_DIGITS = Uint8Array.from([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]);

/**
 * parseTimestamp of the text at buf[start, end), for the form Postgres
 * sends with DateStyle ISO: 'YYYY-MM-DD HH:MM:SS[.f{1,6}][±HH[:MM[:SS]]]'
 * with a four-digit year (AD), read from the bytes without making a string
 * or a regex match. Null for any other text, which the caller then parses
 * with parseTimestamp (the reference; the unit tests compare the two).
 */
export function timestampAt(buf: Buffer, start: number, end: number): bigint | null {
  const len = end - start;
  if (len < 19) return null;
  for (let k = 0; k < TS_DIGITS.length; k++) if (!isDigit(buf[start + TS_DIGITS[k]!])) return null;
  if (buf[start + 4] !== 0x2d || buf[start + 7] !== 0x2d || (buf[start + 10] !== 0x20 && buf[start + 10] !== 0x54) || buf[start + 13] !== 0x3a || buf[start + 16] !== 0x3a) return null;
  const year = d2(buf, start) * 100 + d2(buf, start + 2);
  let secs = daysFromCivil(year, d2(buf, start + 5), d2(buf, start + 8)) * 86400 + d2(buf, start + 11) * 3600 + d2(buf, start + 14) * 60 + d2(buf, start + 17);
  let i = start + 19;
  let frac = 0;
  if (buf[i] === 0x2e) {
    i++;
    let digits = 0;
    while (i < end && isDigit(buf[i])) { frac = frac * 10 + (buf[i]! - 48); i++; digits++; }
    if (digits === 0 || digits > 6) return null;
    for (; digits < 6; digits++) frac *= 10;
  }
  if (i < end) {
    const sign = buf[i];
    if ((sign !== 0x2b && sign !== 0x2d) || !isDigit(buf[i + 1]) || !isDigit(buf[i + 2])) return null;
    let off = d2(buf, i + 1) * 3600;
    i += 3;
    if (i < end) {
      if (buf[i] !== 0x3a || !isDigit(buf[i + 1]) || !isDigit(buf[i + 2])) return null;
      off += d2(buf, i + 1) * 60;
      i += 3;
      if (i < end) {
        if (buf[i] !== 0x3a || !isDigit(buf[i + 1]) || !isDigit(buf[i + 2])) return null;
        off += d2(buf, i + 1);
        i += 3;
      }
    }
    if (i !== end) return null;
    secs -= sign === 0x2b ? off : -off;
  }
  // Exact as a double while |secs| * 10^6 stays below 2^53 (years ~1685-2255); past that, BigInt.
  return secs < 9e9 && secs > -9e9 ? BigInt(secs * 1_000_000 + frac) : BigInt(secs) * 1_000_000n + BigInt(frac);
}

export function parseTime(text: string): bigint {
  const m = TIME_RE.exec(text);
  if (!m) throw new DecodeError(`not a time: "${text}"`);
  return BigInt(Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) * 1_000_000n + fraction(m[4]);
}

function parseFloat64(text: string): number {
  if (text === 'NaN') return NaN;
  if (text === 'Infinity') return Infinity;
  if (text === '-Infinity') return -Infinity;
  const n = Number(text);
  if (Number.isNaN(n)) throw new DecodeError(`not a float: "${text}"`);
  return n;
}

function parseBytea(text: string): Buffer {
  if (text.startsWith('\\x')) return Buffer.from(text.slice(2), 'hex');
  // bytea_output=escape: octal escapes and doubled backslashes.
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 92) { out.push(c); continue; }
    if (text[i + 1] === '\\') { out.push(92); i++; continue; }
    out.push(parseInt(text.slice(i + 1, i + 4), 8));
    i += 3;
  }
  return Buffer.from(out);
}

export function parseScalar(kind: ValueKind, text: string): ScalarValue {
  switch (kind) {
    case 'bool': return text === 't';
    case 'int16': case 'int32': return Number(text);
    case 'int64': return BigInt(text);
    case 'float32': case 'float64': return parseFloat64(text);
    case 'bytea': return parseBytea(text);
    case 'date': return parseDate(text);
    case 'timestamp': case 'timestamptz': return parseTimestamp(text);
    case 'time': return parseTime(text);
    default: return text; // numeric, text, json, uuid, timetz, unknown keep their exact text
  }
}

/** Parses a Postgres array literal ('{1,NULL,"a b"}', nested, with optional '[l:u]=' bounds). */
export function parseArrayLiteral(text: string, element: (s: string) => ScalarValue): ColumnValue[] {
  let i = text.startsWith('[') ? text.indexOf('=') + 1 : 0;
  const parseLevel = (): ColumnValue[] => {
    if (text[i] !== '{') throw new DecodeError(`not an array literal: "${text.slice(0, 80)}"`);
    i++;
    const out: ColumnValue[] = [];
    if (text[i] === '}') { i++; return out; }
    for (;;) {
      if (text[i] === '{') out.push(parseLevel());
      else if (text[i] === '"') {
        let s = '';
        i++;
        while (text[i] !== '"') {
          if (i >= text.length) throw new DecodeError('unterminated quoted array element');
          if (text[i] === '\\') i++;
          s += text[i++];
        }
        i++;
        out.push(element(s));
      } else {
        const start = i;
        while (text[i] !== ',' && text[i] !== '}') i++;
        const s = text.slice(start, i).trim();
        out.push(s === 'NULL' ? null : element(s));
      }
      if (text[i] === ',') { i++; continue; }
      if (text[i] === '}') { i++; return out; }
      throw new DecodeError(`malformed array literal near offset ${i}`);
    }
  };
  return parseLevel();
}

/** Builds the text -> value parser for one column, once per relation. */
export function valueParser(t: ColumnType): (text: string) => ColumnValue {
  const kind = t.kind;
  if (!t.isArray) return (s) => parseScalar(kind, s);
  return (s) => parseArrayLiteral(s, (e) => parseScalar(kind, e));
}
