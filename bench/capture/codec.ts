import { EventEncoder } from '../../src/publisher/event-encoder.ts';
import { buildRelationSchemas } from '../../src/publisher/relation-schema.ts';
import type { PreparedRelation } from '../../src/publisher/schema-manager.ts';
import type { ChangeEvent, Relation } from '../../src/source/change-event.ts';
import { PgoutputDecoder } from '../../src/source/pgoutput.ts';
import { Msg } from '../../test/helpers/pgoutput-messages.ts';

/**
 * npx tsx bench/capture/codec.ts [changes]
 *
 * The capture's own per-change work without any server: pgoutput messages
 * shaped like the backlog's (orders and their order_items, ~1,000 rows per
 * transaction) decoded and encoded into Kafka records, as the capture does
 * between the socket and the producer. For profiling (`node --cpu-prof
 * --import tsx bench/capture/codec.ts`) and for comparing two versions of the
 * code in one session; the pg protocol parser and the Kafka client are not in it.
 */
const N = Number(process.argv[2] ?? 500_000);

const NUM = (p: number, s: number) => ((p << 16) | s) + 4;
const tables: Record<string, { oid: number; cols: [string, number, number, boolean][] }> = {
  orders: { oid: 16401, cols: [['order_id', 20, -1, true], ['customer_id', 20, -1, false], ['order_date', 1184, -1, false], ['status', 25, -1, false], ['updated_at', 1184, -1, false]] },
  order_items: { oid: 16402, cols: [['order_id', 20, -1, true], ['product_id', 20, -1, true], ['quantity', 23, -1, false], ['unit_price', 1700, NUM(10, 2), false], ['discount', 1700, NUM(4, 2), false]] },
};

// One transaction's messages: Begin, 150 orders with 1-10 items each, Commit.
function transaction(txId: number, orderBase: number, lsnBase: bigint): { msgs: [Buffer, bigint][]; changes: number } {
  const msgs: [Buffer, bigint][] = [];
  let lsn = lsnBase;
  const at = () => (lsn += 120n);
  msgs.push([new Msg().ch('B').u64(lsnBase + 200_000n).u64(786_000_000_000_000n + BigInt(txId)).i32(txId).buf, at()]);
  let changes = 0;
  for (let o = orderBase; o < orderBase + 150; o++) {
    msgs.push([new Msg().ch('I').i32(tables.orders!.oid).ch('N').tuple([String(o), String(1 + ((o * 7919) % 10000)), '2026-11-30 08:15:42.123456+00', 'shipped', '2026-12-02 07:40:01.654321+00']).buf, at()]);
    changes++;
    for (let k = 1; k <= 1 + (o % 10); k++) {
      msgs.push([new Msg().ch('I').i32(tables.order_items!.oid).ch('N').tuple([String(o), String(1 + ((o * 31 + k * 97) % 1000)), String(1 + (k % 4)), `${(o + k) % 500}.49`, `0.${(k % 4) * 5}`.padEnd(4, '0')]).buf, at()]);
      changes++;
    }
  }
  msgs.push([new Msg().ch('C').u8(0).u64(lsnBase + 200_000n).u64(lsnBase + 200_100n).u64(786_000_000_000_000n + BigInt(txId)).buf, at()]);
  return { msgs, changes };
}

const header = (id: number) => { const b = Buffer.alloc(5); b.writeInt32BE(id, 1); return b; };
const prepared = new Map<Relation, PreparedRelation>();
const encoder = new EventEncoder({ version: '0.1.0', name: 'bench', db: 'shop' }, true);
let records = 0;
let bytes = 0;
const out: unknown[] = [];
const decoder = new PgoutputDecoder({
  begin() {},
  commit() {},
  relation(r) {
    const schemas = buildRelationSchemas(r, 'bench', () => false);
    prepared.set(r, { schemas, keyId: 1, valueId: 2, keyHeader: header(1), valueHeader: header(2) });
  },
  change(ev: ChangeEvent) {
    const res = encoder.encode(ev, prepared.get(ev.relation)!);
    if (res.error) throw res.error;
    for (const r of res.records) {
      records++;
      bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
      // what the capture keeps per record until its ack (OutMessage)
      out.push({ topic: r.topic, key: r.key, value: r.value, headers: r.headers, ticket: null, commitMs: Number(ev.commitTimeUs) / 1000, table: ev.relation.table, op: ev.kind });
    }
    if (out.length >= 20_000) out.length = 0;
  },
  message() {},
});
for (const [name, t] of Object.entries(tables)) {
  const m = new Msg().ch('R').i32(t.oid).str('public').str(name).ch('d').i16(t.cols.length);
  for (const [col, oid, mod, key] of t.cols) m.u8(key ? 1 : 0).str(col).i32(oid).i32(mod);
  decoder.decode(m.buf, 0, 1n);
}

// Messages built once (a few transactions, replayed): building is not what is measured.
const txs = Array.from({ length: 8 }, (_, i) => transaction(1000 + i, 1 + i * 150, 0x1_0000_0000n + BigInt(i) * 300_000n));
const perRound = txs.reduce((a, t) => a + t.changes, 0);
const run = (changes: number) => {
  let done = 0;
  while (done < changes) for (const t of txs) { for (const [b, l] of t.msgs) decoder.decode(b, 0, l); done += t.changes; }
  return done;
};
run(Math.min(N, 100_000)); // warm-up
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const done = run(N);
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const cpuS = (cpu.user + cpu.system) / 1e6;
process.stdout.write(`${JSON.stringify({ changes: done, perRound, records, avgRecordBytes: Math.round(bytes / records), ms: Math.round(ms), changesPerSec: Math.round(done / (ms / 1000)), cpuSecondsPer100k: Math.round((cpuS / done) * 1e5 * 1000) / 1000 })}\n`);
