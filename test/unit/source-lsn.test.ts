import { describe, expect, it } from 'vitest';
import { formatLsn, parseLsn, readLsn } from '../../src/source/lsn.ts';

describe('lsn', () => {
  it('parses and formats the X/Y text form', () => {
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(formatLsn(parseLsn('16/b374d848'))).toBe('16/B374D848');
    expect(formatLsn(parseLsn('FFFFFFFF/FFFFFFFF'))).toBe('FFFFFFFF/FFFFFFFF');
  });
  it('keeps values above 2^53 exact', () => {
    const big = parseLsn('FFFFFFFF/FFFFFFFE');
    expect(big + 1n).toBe((1n << 64n) - 1n);
  });
  it('rejects malformed text', () => {
    expect(() => parseLsn('12')).toThrow(/not an LSN/);
    expect(() => parseLsn('1/123456789')).toThrow(/not an LSN/);
    expect(() => formatLsn(-1n)).toThrow(/out of range/);
  });
  it('reads a big-endian LSN from a protocol buffer', () => {
    const b = Buffer.alloc(9);
    b.writeBigUInt64BE(0x1_0000_0002n, 1);
    expect(readLsn(b, 1)).toBe(0x1_0000_0002n);
  });
});
