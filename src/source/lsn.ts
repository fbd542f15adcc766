import { DecodeError } from '../errors.ts';

/**
 * Postgres log sequence numbers. They are 64-bit positions; a JS number
 * cannot hold all of them exactly, so every LSN is a bigint from the moment
 * it enters the process and is only turned back into text to talk to
 * Postgres or to log.
 */
export type Lsn = bigint;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
export const MAX_LSN: Lsn = (1n << 64n) - 1n;

export function parseLsn(text: string): Lsn {
  const m = LSN_TEXT.exec(text.trim());
  if (!m) throw new DecodeError(`not an LSN: "${text}"`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new DecodeError(`LSN out of range: ${lsn}`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Reads a big-endian 64-bit LSN from the replication protocol. */
export function readLsn(buf: Buffer, offset: number): Lsn {
  return buf.readBigUInt64BE(offset);
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
