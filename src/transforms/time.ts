/**
 * Timestamps as exact microseconds since the epoch (bigint). JS Dates keep
 * milliseconds only, and docs/contract.md §3 needs microseconds both in staging and in
 * the `customer_key` hash, so every timestamp crosses this module as µs.
 */
const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)$/;

/** Parses an ISO-8601 instant with an offset (Debezium ZonedTimestamp, Postgres text). Sub-microsecond digits are truncated. */
export function parseInstantUs(text: string): bigint | undefined {
  const m = ISO.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac = '', zone = 'Z'] = m;
  const year = Number(y), month = Number(mo), day = Number(d);
  const hour = Number(h), minute = Number(mi), second = Number(s);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  // Date.UTC maps years 0-99 to 1900-1999; setUTCFullYear does not.
  const check = new Date(Date.UTC(2000, 0, 1, hour, minute, second));
  check.setUTCFullYear(year, month - 1, day);
  const ms = check.getTime();
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month - 1) return undefined;
  let offsetMin = 0;
  if (zone !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    offsetMin = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || '0'));
  }
  const micros = BigInt((frac + '000000').slice(0, 6));
  return (BigInt(ms) - BigInt(offsetMin) * 60_000n) * 1000n + micros;
}

/** Formats µs as `YYYY-MM-DDTHH:MI:SS.ffffffZ` in UTC: the docs/contract.md §3 hash format and a lossless Postgres input. */
export function formatInstantUs(us: bigint): string {
  let ms = us / 1000n;
  let micros = us % 1000n;
  if (micros < 0n) {
    micros += 1000n;
    ms -= 1n;
  }
  const iso = new Date(Number(ms)).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${iso.slice(0, 23)}${micros.toString().padStart(3, '0')}Z`;
}

/** Canonical form of an instant string, or undefined when it is not one. */
export function canonicalInstant(text: string): string | undefined {
  const us = parseInstantUs(text);
  return us === undefined ? undefined : formatInstantUs(us);
}

/** The current-version expiration of docs/contract.md §3: 9999-12-31T00:00:00Z. */
export const END_OF_TIME_US = parseInstantUs('9999-12-31T00:00:00Z')!;
