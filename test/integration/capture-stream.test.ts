import { Kafka, logLevel } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { consumeUntil, createHarness, startInProcess, waitFor, type Decoded, type Harness } from '../../bench/capture/harness.ts';
import { loadStackConfig } from '../../src/config/index.ts';
import pino from 'pino';
import { CaptureService } from '../../src/source/capture.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/** Streaming semantics against the real stack: order per key, ops, snapshot handover, schema evolution. */
let h: Harness | undefined;
let cap: CaptureService | undefined;
afterEach(async () => {
  await cap?.stop();
  await h?.cleanup();
  cap = undefined;
  h = undefined;
});

const keyOf = (m: Decoded) => JSON.stringify(m.key, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));

describe('capture: streaming', () => {
  // Once per producer (CAPTURE_PRODUCER): order per key must not depend on the Kafka client.
  it.each(['kafkajs', 'rdkafka'])('delivers inserts, updates, deletes (+tombstones) and truncates in commit order per key (%s producer)', async (producer) => {
    h = await createHarness(uniqueId('cap_order'));
    const s = h.id;
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_PRODUCER: producer }));
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) SELECT g, 'c' || g || '@x', 'F', 'L', 'bronze' FROM generate_series(1, 50) g`);
    // Many small transactions touching the same keys in a known order.
    const segs = ['silver', 'gold', 'platinum', 'bronze'];
    for (let round = 0; round < 4; round++) {
      await h.pool.query(`UPDATE ${s}.customers SET customer_segment = $1 WHERE customer_id % 2 = $2`, [segs[round], round % 2]);
    }
    await h.pool.query(`BEGIN; UPDATE ${s}.customers SET first_name = 'G' WHERE customer_id = 7; DELETE FROM ${s}.customers WHERE customer_id = 7; COMMIT`);
    await h.pool.query(`TRUNCATE ${s}.customers CASCADE`);
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (7, 'again@x', 'A', 'B', 'gold')`);

    const expected = 50 + 4 * 25 + 1 + 1 + 1 /* tombstone */ + 1 /* truncate */ + 1;
    const msgs = await consumeUntil([h.topic('customers')], (all) => all.length >= expected, 60_000);
    expect(msgs.length).toBe(expected);
    const ops = msgs.map((m) => (m.value ? m.value.op : 'tombstone'));
    expect(ops.filter((o) => o === 'c').length).toBe(51);
    expect(ops.filter((o) => o === 'u').length).toBe(101);
    // delete, then its tombstone with the same key, then truncate, then the re-insert
    expect(ops.slice(-4)).toEqual(['d', 'tombstone', 't', 'c']);
    expect(msgs.at(-3)!.key).toEqual({ customer_id: 7n });
    // Table topics are compacted (they refuse keyless records): a truncate carries the topic's one truncate key.
    expect(msgs.at(-2)!.key).toEqual({ truncate: true });
    expect(msgs.at(-4)!.value.before.first_name).toBe('G');

    // Per key, each update's before-image is the previous after-image: nothing lost, reordered or repeated.
    const state = new Map<string, any>();
    for (const m of msgs.slice(0, -4)) {
      const k = keyOf(m);
      const v = m.value;
      if (v.op === 'c') expect(state.has(k)).toBe(false);
      else expect(v.before).toEqual(state.get(k));
      state.set(k, v.after);
    }
    const id7 = msgs.filter((m) => keyOf(m) === '{"customer_id":"7"}' && m.value?.op === 'u').map((m) => m.value.after.customer_segment);
    expect(id7).toEqual(['gold', 'bronze', 'bronze']); // the last is the first_name update just before the delete
    // LSNs never go backwards in the topic, and commit LSNs are per transaction
    const lsns = msgs.filter((m) => m.value).map((m) => m.value.source.lsn as bigint);
    expect(lsns.every((l, i) => i === 0 || l >= lsns[i - 1]!)).toBe(true);
    // source.sequence = [last committed LSN, LSN]: the ordering key grows in topic order
    const seqs = msgs.filter((m) => m.value).map((m) => JSON.parse(m.value.source.sequence as string).map(BigInt) as [bigint, bigint]);
    expect(seqs.every(([c, l], i) => i === 0 || c > seqs[i - 1]![0] || (c === seqs[i - 1]![0] && l >= seqs[i - 1]![1]))).toBe(true);
    const admin = new Kafka({ brokers: loadStackConfig().kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const conf = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: h.topic('customers'), configNames: ['cleanup.policy', 'delete.retention.ms'] }] });
    await admin.disconnect();
    const entries = Object.fromEntries(conf.resources[0]!.configEntries.map((e) => [e.configName, e.configValue]));
    expect(entries).toEqual({ 'cleanup.policy': 'compact', 'delete.retention.ms': String(7 * 24 * 3600 * 1000) });
  });

  it('snapshot then streaming: every pre-existing row exactly once, then every later change', async () => {
    h = await createHarness(uniqueId('cap_snap'));
    const s = h.id;
    const N = 3000;
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) SELECT g, 'c' || g || '@x', 'F', 'L', 'bronze' FROM generate_series(1, ${N}) g`);
    // Keep writing while the slot is created and the snapshot is read.
    let stop = false;
    let writes = 0;
    const writer = (async () => {
      let i = 0;
      while (!stop) {
        const id = 1 + ((i * 37) % N);
        await h!.pool.query(`UPDATE ${s}.customers SET first_name = $1 WHERE customer_id = $2`, [`w${i}`, id]);
        await h!.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES ($1, 'n@x', 'N', 'N', 'gold')`, [N + 1 + i]);
        i++;
        writes += 2;
      }
    })();
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'initial' }));
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await writer;
    const { rows: [{ n }] } = await h.pool.query(`SELECT count(*)::int AS n FROM ${s}.customers`);

    const msgs = await consumeUntil([h.topic('customers')], (all) => {
      const st = new Set(all.map(keyOf));
      return st.size >= n && all.length >= n;
    }, 60_000);
    // replay: snapshot rows, then changes; each change's before must equal the replayed state
    const state = new Map<string, any>();
    const reads = msgs.filter((m) => m.value.op === 'r');
    expect(new Set(reads.map(keyOf)).size).toBe(reads.length);
    expect(reads[0]!.value.source.snapshot).toBe('first');
    expect(reads.at(-1)!.value.source.snapshot).toBe('last');
    let sawStream = false;
    for (const m of msgs) {
      const k = keyOf(m);
      const v = m.value;
      if (v.op === 'r') { expect(sawStream).toBe(false); expect(state.has(k)).toBe(false); }
      else if (v.op === 'c') { sawStream = true; expect(state.has(k)).toBe(false); }
      else { sawStream = true; expect(v.before).toEqual(state.get(k)); }
      state.set(k, v.after);
    }
    // the replayed state equals the source, row for row
    const { rows } = await h.pool.query(`SELECT customer_id, first_name FROM ${s}.customers`);
    expect(state.size).toBe(rows.length);
    for (const r of rows) expect(state.get(`{"customer_id":"${r.customer_id}"}`).first_name).toBe(r.first_name);
    expect(writes).toBeGreaterThan(0);
  });

  it('an added column registers a new backward-compatible schema version and events keep flowing', async () => {
    h = await createHarness(uniqueId('cap_ddl'));
    const s = h.id;
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never' }));
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (1, 'a@x', 'A', 'B', 'gold')`);
    await h.pool.query(`ALTER TABLE ${s}.customers ADD COLUMN loyalty_points int NOT NULL DEFAULT 0`);
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment, loyalty_points) VALUES (2, 'b@x', 'C', 'D', 'gold', 42)`);
    const msgs = await consumeUntil([h.topic('customers')], (all) => all.length >= 2, 60_000);
    expect(msgs[0]!.value.after.loyalty_points).toBeUndefined();
    expect(msgs[1]!.value.after.loyalty_points).toBe(42);
    const registry = loadStackConfig().registryUrl;
    const subject = `${h.topic('customers')}-value`;
    const versions = await waitFor('two versions', async () => {
      const v = (await (await fetch(`${registry}/subjects/${subject}/versions`)).json()) as number[];
      return v.length === 2 ? v : null;
    });
    expect(versions).toEqual([1, 2]);
    const v2 = JSON.parse(((await (await fetch(`${registry}/subjects/${subject}/versions/2`)).json()) as { schema: string }).schema);
    const field = v2.fields[0].type[1].fields.find((f: { name: string }) => f.name === 'loyalty_points');
    // NOT NULL in Postgres, but optional with default null so version 2 can read version 1 data
    expect(field).toEqual({ name: 'loyalty_points', type: ['null', 'int'], default: null });
    expect(msgs[1]!.raw.value!.readInt32BE(1)).not.toBe(msgs[0]!.raw.value!.readInt32BE(1));
  });

  it('re-snapshots one table on demand while streaming continues', async () => {
    h = await createHarness(uniqueId('cap_resnap'));
    const s = h.id;
    await h.pool.query(`INSERT INTO ${s}.products (product_id, product_name, category, price) SELECT g, 'p' || g, 'home', g + 0.5 FROM generate_series(1, 200) g`);
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_SNAPSHOT_CHUNK_SIZE: '64' }));
    await h.pool.query(`UPDATE ${s}.products SET price = 1.25 WHERE product_id = 1`);
    // what `capture resnapshot <schema.table>` sends
    await h.pool.query("SELECT pg_logical_emit_message(true, 'shopstream.snapshot', $1)", [`${s}.products`]);
    await h.pool.query(`UPDATE ${s}.products SET price = 2.50 WHERE product_id = 2`);
    const isDone = async () => (await h!.pool.query(`SELECT count(*)::int AS n FROM ${s}_meta.capture_incremental_snapshots`).catch(() => ({ rows: [{ n: 1 }] }))).rows[0].n === 0;
    await waitFor('re-snapshot done', async () => ((await isDone()) ? true : null), 60_000);
    const msgs = await consumeUntil([h.topic('products')], (all) => all.filter((m) => m.value?.op === 'r').length >= 199 && all.filter((m) => m.value?.op === 'u').length >= 2, 60_000);
    await new Promise((r) => setTimeout(r, 500));
    const all = await consumeUntil([h.topic('products')], (x) => x.length >= msgs.length, 10_000);
    expect(all[0]!.value.op).toBe('u');
    const reads = all.filter((m) => m.value.op === 'r');
    expect(reads.every((m) => m.value.source.snapshot === 'incremental')).toBe(true);
    // each key read at most once (4 chunks); product 2's row is dropped if its update landed inside that chunk's window
    expect(new Set(reads.map(keyOf)).size).toBe(reads.length);
    expect(reads.length).toBeGreaterThanOrEqual(199);
    // the last event per key is the source row
    const last = new Map<string, any>();
    for (const m of all) last.set(keyOf(m), m.value.after);
    expect(last.size).toBe(200);
    const cents = (k: number) => Number(BigInt(`0x${(last.get(`{"product_id":"${k}"}`).price as Buffer).toString('hex')}`)); // decimal(10,2) bytes
    expect([cents(1), cents(2), cents(3), cents(200)]).toEqual([125, 250, 350, 20050]);
  });

  it('leaves an existing table topic that is not compacted as it is, with a warning', async () => {
    h = await createHarness(uniqueId('cap_oldtopic'));
    const s = h.id;
    const admin = new Kafka({ brokers: loadStackConfig().kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: h.topic('customers'), numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'delete' }] }] });
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => { lines.push(l); } });
    cap = new CaptureService(h.config({ CAPTURE_SNAPSHOT: 'never' }), log);
    await cap.start(new AbortController().signal);
    await h.pool.query(`INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (1, 'a@x', 'A', 'B', 'gold')`);
    await consumeUntil([h.topic('customers')], (all) => all.length >= 1, 60_000);
    const warned = lines.map((l) => JSON.parse(l)).filter((l) => /not compacted/.test(l.msg));
    expect(warned.map((l) => [l.topic, l.cleanupPolicy])).toEqual([[h.topic('customers'), 'delete']]);
    const conf = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: h.topic('customers'), configNames: ['cleanup.policy'] }] });
    await admin.disconnect();
    expect(conf.resources[0]!.configEntries[0]!.configValue).toBe('delete');
  });

  it('optionally writes BEGIN/END transaction metadata with per-table event counts', async () => {
    h = await createHarness(uniqueId('cap_txmeta'));
    const s = h.id;
    cap = await startInProcess(h.config({ CAPTURE_SNAPSHOT: 'never', CAPTURE_TRANSACTION_METADATA: 'true' }));
    await h.pool.query(`BEGIN;
      INSERT INTO ${s}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (1, 'a@x', 'A', 'B', 'gold'), (2, 'b@x', 'C', 'D', 'gold');
      INSERT INTO ${s}.products (product_id, product_name, category, price) VALUES (5, 'Mug', 'home', 3.50);
      COMMIT`);
    const msgs = await consumeUntil([`${s}.transaction`, h.topic('customers'), h.topic('products')], (all) => all.length >= 5, 60_000);
    const meta = msgs.filter((m) => m.topic === `${s}.transaction`);
    expect(meta.map((m) => m.value.status)).toEqual(['BEGIN', 'END']);
    const id = meta[0]!.value.id as string;
    expect(meta[0]!.key).toEqual({ id });
    expect(meta[1]!.value.event_count).toBe(3n);
    expect(meta[1]!.value.data_collections).toEqual([
      { data_collection: `${s}.customers`, event_count: 2n },
      { data_collection: `${s}.products`, event_count: 1n },
    ]);
    const events = msgs.filter((m) => m.topic !== `${s}.transaction`);
    expect(events.every((m) => m.value.transaction.id === id)).toBe(true);
  });
});
