/**
 * Tiny builder for pgoutput v1 messages, written from the protocol docs:
 * the decoder's unit tests and bench/capture/codec.ts feed it to PgoutputDecoder.
 * In a tuple, null is a NULL column and 'U' an unchanged TOASTed one.
 */
export class Msg {
  parts: Buffer[] = [];
  u8(v: number) { this.parts.push(Buffer.from([v])); return this; }
  ch(c: string) { return this.u8(c.charCodeAt(0)); }
  i16(v: number) { const b = Buffer.alloc(2); b.writeInt16BE(v); this.parts.push(b); return this; }
  i32(v: number) { const b = Buffer.alloc(4); b.writeInt32BE(v); this.parts.push(b); return this; }
  u64(v: bigint) { const b = Buffer.alloc(8); b.writeBigUInt64BE(v); this.parts.push(b); return this; }
  str(s: string) { this.parts.push(Buffer.from(s + '\0')); return this; }
  tuple(vals: (string | null | 'U')[]) {
    this.i16(vals.length);
    for (const v of vals) {
      if (v === null) this.ch('n');
      else if (v === 'U') this.ch('u');
      else { const b = Buffer.from(v); this.ch('t').i32(b.length); this.parts.push(b); }
    }
    return this;
  }
  get buf() { return Buffer.concat(this.parts); }
}
