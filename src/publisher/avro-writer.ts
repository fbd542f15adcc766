/**
 * A minimal Avro binary writer. We generate the schemas ourselves, so a
 * writer specialised to them is simpler and several times faster than a
 * generic encoder walking a schema per value; it also writes bigint longs
 * exactly (int8 ids, microsecond timestamps), which avsc's default long type
 * cannot. Correctness is checked in unit tests by decoding with avsc.
 */
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

  /** Copies what was written since `start` into a buffer of its own. */
  copyFrom(start: number): Buffer {
    return Buffer.from(this.buf.subarray(start, this.pos));
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  raw(b: Buffer): void {
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  bool(v: boolean): void {
    this.byte(v ? 1 : 0);
  }

  /** Avro int and long share the zig-zag varint encoding. */
  long(v: number | bigint): void {
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

  private bigLong(v: bigint): void {
    this.ensure(10);
    let n = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    while (n >= 128n) {
      this.buf[this.pos++] = Number(n & 127n) | 128;
      n >>= 7n;
    }
    this.buf[this.pos++] = Number(n);
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

  bytes(b: Buffer): void {
    this.long(b.length);
    this.raw(b);
  }

  string(s: string): void {
    // Pure ASCII is the common case; byteLength scans it once, write copies it.
    const len = Buffer.byteLength(s);
    this.long(len);
    this.ensure(len);
    this.buf.write(s, this.pos, len, 'utf8');
    this.pos += len;
  }
}
