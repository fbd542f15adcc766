import { DecodeError } from '../errors.ts';

/**
 * A JSON number kept as the text it was written as. `JSON.parse` turns every
 * number into a double, which silently rounds an int64 past 2^53 (ids, LSNs,
 * `ts_ns`) and the digits of a `decimal.handling.mode=double` value; the
 * Debezium JSON decoder decides per field what a number becomes.
 */
export class JsonNumber {
  constructor(readonly raw: string) {}
  get isInteger(): boolean {
    return /^-?\d+$/.test(this.raw);
  }
  toBigint(): bigint {
    if (!this.isInteger) throw new DecodeError(`${this.raw} is not an integer`);
    return BigInt(this.raw);
  }
  toNumber(): number {
    return Number(this.raw);
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | { [k: string]: JsonValue };

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * Strict JSON (RFC 8259) → values with every number as a JsonNumber. Throws
 * DecodeError with the byte offset on anything that is not one JSON value.
 */
export function parseJsonLossless(text: string): JsonValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new DecodeError(`malformed JSON at ${i >= text.length ? 'the end of the message (truncated?)' : `offset ${i}`}: ${what}`);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  let nextSlash = text.indexOf('\\');
  const str = (): string => {
    const start = i + 1;
    const end = text.indexOf('"', start);
    if (end < 0) fail('unterminated string');
    // The next backslash, found once and reused: a fresh indexOf per string would rescan the rest of the text.
    if (nextSlash !== -1 && nextSlash < start) nextSlash = text.indexOf('\\', start);
    if (nextSlash === -1 || nextSlash > end) {
      // No escapes: the common case, sliced without a per-character walk beyond the control check.
      for (let k = start; k < end; k++) if (text.charCodeAt(k) < 0x20) { i = k; fail('control character in string'); }
      i = end + 1;
      return text.slice(start, end);
    }
    // Escapes: find the real closing quote, then let JSON.parse decode this one string.
    let k = start;
    for (;;) {
      if (k >= text.length) { i = k; fail('unterminated string'); }
      const c = text.charCodeAt(k);
      if (c === 0x22) break;
      if (c < 0x20) { i = k; fail('control character in string'); }
      k += c === 0x5c ? 2 : 1;
    }
    i = k + 1;
    try {
      return JSON.parse(text.slice(start - 1, i)) as string;
    } catch {
      return fail('bad escape in string');
    }
  };
  const value = (depth: number): JsonValue => {
    if (depth > 256) fail('nested too deeply');
    ws();
    const c = text.charCodeAt(i);
    if (c === 0x7b) { // {
      i++;
      const obj: { [k: string]: JsonValue } = {};
      ws();
      if (text.charCodeAt(i) === 0x7d) { i++; return obj; }
      for (;;) {
        ws();
        if (text.charCodeAt(i) !== 0x22) fail('expected a key');
        const k = str();
        ws();
        if (text.charCodeAt(i) !== 0x3a) fail('expected ":"');
        i++;
        obj[k] = value(depth + 1);
        ws();
        const d = text.charCodeAt(i);
        if (d === 0x2c) { i++; continue; }
        if (d === 0x7d) { i++; return obj; }
        fail('expected "," or "}"');
      }
    }
    if (c === 0x5b) { // [
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text.charCodeAt(i) === 0x5d) { i++; return arr; }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        const d = text.charCodeAt(i);
        if (d === 0x2c) { i++; continue; }
        if (d === 0x5d) { i++; return arr; }
        fail('expected "," or "]"');
      }
    }
    if (c === 0x22) return str();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail(i >= text.length ? 'unexpected end' : `unexpected character ${JSON.stringify(text[i])}`);
    i = NUMBER.lastIndex;
    return new JsonNumber(m[0]);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters after the value');
  return v;
}

/** UTF-8 bytes → lossless JSON; invalid UTF-8 is a DecodeError, not a U+FFFD. */
export function parseJsonBytes(buf: Buffer): JsonValue {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new DecodeError('message is not valid UTF-8 JSON');
  }
  return parseJsonLossless(text);
}
