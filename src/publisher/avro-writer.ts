/**
 * A minimal Avro binary writer. We generate the schemas ourselves, so a
 * writer specialised to them is simpler and several times faster than a
 * generic encoder walking a schema per value; it also writes bigint longs
 * exactly (int8 ids, microsecond timestamps), which avsc's default long type
 * cannot. Correctness is checked in unit tests by decoding with avsc.
 */
/** Number of decimal digits of a non-negative safe integer. */
export function decimalLength(n: number): number {
  let d = 1;
  while (n >= 10) { n = Math.floor(n / 10); d++; }
  return d;
}

export class AvroWriter {
  buf: Buffer;
  pos = 0;

  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  reset(): this {
    this.pos = 0;
    return this;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Makes room for `n` bytes at `pos` and moves past them; the caller fills buf[start, start + n). */
  claim(n: number): number {
    this.ensure(n);
    const start = this.pos;
    this.pos += n;
    return start;
  }

  /** Copies what was written since `start` into a buffer of its own. */
  copyFrom(start: number): Buffer {
    return Buffer.from(this.buf.subarray(start, this.pos));
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  raw(b: Uint8Array): void {
    this.ensure(b.length);
    // TypedArray#set: for the short prebuilt parts of every record, cheaper than Buffer#copy's native call
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  bool(v: boolean): void {
    this.byte(v ? 1 : 0);
  }

  /** Avro int and long share the zig-zag varint encoding. */
  long(v: number | bigint): void {
    // Most longs of a record (union branches, lengths, orders, quantities) are small: zig-zag in 31 bits, shifts not divisions.
    if (typeof v === 'number' && (v | 0) === v && v < 0x40000000 && v >= -0x40000000) {
      this.ensure(5);
      const buf = this.buf;
      let pos = this.pos;
      let n = (v << 1) ^ (v >> 31);
      while (n > 127) {
        buf[pos++] = (n & 127) | 128;
        n >>>= 7;
      }
      buf[pos++] = n;
      this.pos = pos;
      return;
    }
    // Most bigints (ids, microsecond timestamps) fit the fast number path exactly.
    if (typeof v === 'bigint' && v < 4503599627370496n && v > -4503599627370496n) v = Number(v);
    if (typeof v === 'number' && Number.isSafeInteger(v) && v < 2 ** 52 && v > -(2 ** 52)) {
      this.ensure(10);
      let n = v >= 0 ? v * 2 : -v * 2 - 1;
      while (n >= 128) {
        this.buf[this.pos++] = (n % 128) | 128;
        n = Math.floor(n / 128);
      }
      this.buf[this.pos++] = n;
      return;
    }
    this.bigLong(BigInt(v));
  }

  /**
   * Longs past 2^52 (nanosecond timestamps, int8 extremes): the zig-zag value
   * is split once into two 32-bit halves and written from those, instead of
   * a BigInt shift and mask per 7 bits (two per envelope, it showed in profiles).
   */
  private bigLong(v: bigint): void {
    this.ensure(10);
    const u = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    let hi = Number(u >> 32n);
    let lo = Number(u & 0xffffffffn);
    const buf = this.buf;
    while (hi !== 0 || lo > 127) {
      buf[this.pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | ((hi & 127) << 25)) >>> 0;
      hi >>>= 7;
    }
    buf[this.pos++] = lo;
  }

  /**
   * `v * scale + add` as an Avro long, for v >= 0 a safe integer and
   * 0 <= add < scale (microseconds -> nanoseconds: the product passes 2^53,
   * so it is built in 32-bit halves rather than through a BigInt).
   */
  scaledLong(v: number, scale: number, add = 0): void {
    const p = v * scale + add;
    if (p < 2 ** 52) { this.long(p); return; }
    this.ensure(10);
    // zig-zag of a non-negative n is 2n: the halves of v * (2 * scale) + 2 * add
    const m = scale * 2;
    const vh = Math.floor(v / 4294967296);
    const vl = v - vh * 4294967296;
    const lowProduct = vl * m + add * 2; // < 2^32 * m + m, exact while m < 2^21
    const carry = Math.floor(lowProduct / 4294967296);
    let lo = lowProduct - carry * 4294967296;
    let hi = vh * m + carry;
    const buf = this.buf;
    while (hi !== 0 || lo > 127) {
      buf[this.pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | ((hi & 127) << 25)) >>> 0;
      hi = Math.floor(hi / 128);
    }
    buf[this.pos++] = lo;
  }

  /** The ASCII decimal digits of `n` (a non-negative safe integer), `digits` of them (decimalLength(n)); no length prefix. */
  asciiDigits(n: number, digits: number): void {
    this.ensure(digits);
    const buf = this.buf;
    for (let k = this.pos + digits - 1; k >= this.pos; k--) {
      const q = Math.floor(n / 10);
      buf[k] = 48 + (n - q * 10);
      n = q;
    }
    this.pos += digits;
  }

  float(v: number): void {
    this.ensure(4);
    this.buf.writeFloatLE(v, this.pos);
    this.pos += 4;
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /**
   * An Avro decimal (bytes: big-endian two's complement of the unscaled
   * value, minimal length) from a decimal string, when it has at most 15
   * digits at `scale` and no more fraction digits than `scale`: the common
   * case, done in doubles (exact below 2^53). Returns false for anything else
   * (the caller takes the exact BigInt path, which also reports bad input).
   */
  decimal(text: string, scale: number): boolean {
    const len = text.length;
    let i = 0;
    let neg = false;
    if (text.charCodeAt(0) === 45) { neg = true; i = 1; }
    if (i === len) return false;
    let n = 0;
    let digits = 0;
    let frac = -1;
    for (; i < len; i++) {
      const c = text.charCodeAt(i);
      if (c === 46) {
        if (frac >= 0 || digits === 0 || i === len - 1) return false;
        frac = 0;
        continue;
      }
      if (c < 48 || c > 57) return false;
      if (frac >= 0 && ++frac > scale) return false;
      n = n * 10 + (c - 48);
      if (++digits > 15) return false;
    }
    for (let k = frac < 0 ? 0 : frac; k < scale; k++) {
      n *= 10;
      if (++digits > 15) return false;
    }
    if (neg) n = -n;
    let bytes = 1;
    let lim = 128;
    while (n >= lim || n < -lim) { bytes++; lim *= 256; }
    this.long(bytes);
    this.ensure(bytes);
    // Least significant byte last; floor division keeps negative values in two's complement.
    for (let k = bytes - 1; k >= 0; k--) {
      const q = Math.floor(n / 256);
      this.buf[this.pos + k] = n - q * 256;
      n = q;
    }
    this.pos += bytes;
    return true;
  }

  bytes(b: Buffer): void {
    this.long(b.length);
    this.raw(b);
  }

  string(s: string): void {
    const n = s.length;
    // Short ASCII strings (names, emails, enum values: most of a row) are copied by a JS loop: cheaper than
    // the two native calls below. The length prefix of n < 64 is one byte; any non-ASCII char falls back.
    if (n < 64) {
      this.ensure(n + 1);
      const buf = this.buf;
      const start = this.pos;
      buf[start] = n * 2;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 127) break;
        buf[start + 1 + i] = c;
      }
      if (i === n) { this.pos = start + 1 + n; return; }
    }
    // Pure ASCII is the common case; byteLength scans it once, write copies it.
    const len = Buffer.byteLength(s);
    this.long(len);
    this.ensure(len);
    this.buf.write(s, this.pos, len, 'utf8');
    this.pos += len;
  }
}
