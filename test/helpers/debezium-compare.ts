import type { KafkaMessage } from 'kafkajs';
import type { MessageDecoder } from '../../src/consumer/decode.ts';

/**
 * One canonical form for a change record of either producer (our Avro,
 * Debezium's JSON with or without schemas), so records can be compared
 * field by field: every number as its decimal text, bytes as hex, absent
 * fields as null.
 */
export interface CanonicalRecord {
  table: string;
  /** `<table>|<source.lsn>|<op>`, or `<table>|tombstone|<key>|<n>` for the n-th tombstone of a key. */
  id: string;
  fields: Record<string, string | null>;
}

function flatten(v: unknown, path: string, out: Record<string, string | null>): void {
  if (v === null || v === undefined) { out[path] = null; return; }
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') { out[path] = String(v); return; }
  if (typeof v === 'string') { out[path] = v; return; }
  if (Buffer.isBuffer(v)) { out[path] = `\\x${v.toString('hex')}`; return; }
  if (Array.isArray(v)) { out[path] = JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x)); return; }
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) flatten(x, path ? `${path}.${k}` : k, out);
}

export async function canonicalRecords(decoder: MessageDecoder, topic: string, table: string, messages: KafkaMessage[]): Promise<CanonicalRecord[]> {
  const out: CanonicalRecord[] = [];
  const tombstones = new Map<string, number>();
  for (const m of messages) {
    const fields: Record<string, string | null> = {};
    if (m.key) flatten(await decoder.key(topic, m.key), 'key', fields);
    if (!m.value || m.value.length === 0) {
      const k = JSON.stringify(fields);
      const n = (tombstones.get(k) ?? 0) + 1;
      tombstones.set(k, n);
      out.push({ table, id: `${table}|tombstone|${k}|${n}`, fields });
      continue;
    }
    const v = (await decoder.value(topic, m.value)) as { op: string; source: { lsn: unknown } };
    flatten(v, '', fields);
    out.push({ table, id: `${table}|${String(v.source.lsn)}|${v.op}`, fields });
  }
  return out;
}

export interface FieldDiff {
  id: string;
  field: string;
  ours: string | null | undefined;
  theirs: string | null | undefined;
}

/**
 * Field-by-field differences of two record sets, matched by id. A record on
 * one side only is a difference of the pseudo-field `(record)`. A difference
 * `allowed` accepts (it sees the two values and both records) is left out;
 * a field that only one side has counts, unless it is null on the side that
 * has it.
 */
export function diffRecords(
  ours: CanonicalRecord[],
  theirs: CanonicalRecord[],
  allowed: (d: FieldDiff, ours: CanonicalRecord, theirs: CanonicalRecord) => boolean,
): FieldDiff[] {
  const byId = new Map(theirs.map((r) => [r.id, r]));
  const diffs: FieldDiff[] = [];
  for (const o of ours) {
    const t = byId.get(o.id);
    byId.delete(o.id);
    if (!t) { diffs.push({ id: o.id, field: '(record)', ours: 'present', theirs: undefined }); continue; }
    for (const f of new Set([...Object.keys(o.fields), ...Object.keys(t.fields)])) {
      const a = o.fields[f] ?? null;
      const b = t.fields[f] ?? null;
      if (a === b) continue;
      const d = { id: o.id, field: f, ours: o.fields[f], theirs: t.fields[f] };
      if (!allowed(d, o, t)) diffs.push(d);
    }
  }
  for (const t of byId.values()) diffs.push({ id: t.id, field: '(record)', ours: undefined, theirs: 'present' });
  return diffs;
}

/** Field names differing in `diffs`, with a count and one example each: the test's failure message. */
export function summarise(diffs: FieldDiff[]): Record<string, { n: number; example: FieldDiff }> {
  const s: Record<string, { n: number; example: FieldDiff }> = {};
  for (const d of diffs) {
    const k = d.field;
    s[k] ??= { n: 0, example: { ...d, ours: d.ours?.slice(0, 120), theirs: d.theirs?.slice(0, 120) } };
    s[k].n++;
  }
  return s;
}

type AvroField = { name: string; type: unknown };

/** One column of our registered Avro Value record as `type|optional|connect.name|parameters`. */
function avroColumn(f: AvroField): string {
  let t = f.type;
  let optional = false;
  if (Array.isArray(t)) {
    optional = t.includes('null');
    t = t.find((x) => x !== 'null');
  }
  const o = (typeof t === 'string' ? { type: t } : t) as Record<string, unknown>;
  const base = o.type === 'long' ? 'int64' : o.type === 'int' ? (o['connect.type'] === 'int16' ? 'int16' : 'int32') : o.type === 'double' ? 'float64' : o.type === 'float' ? 'float32' : String(o.type);
  const params = o['connect.parameters'] as Record<string, string> | undefined;
  return `${f.name}:${base}|${optional}|${String(o['connect.name'] ?? '')}|${params ? JSON.stringify(Object.fromEntries(Object.entries(params).sort())) : ''}`;
}

/** One column of Debezium's JsonConverter schema in the same form. */
function connectColumn(f: { field: string; type: string; optional?: boolean; name?: string; parameters?: Record<string, string> }): string {
  const base = f.type === 'double' ? 'float64' : f.type === 'float' ? 'float32' : f.type;
  return `${f.field}:${base}|${f.optional === true}|${f.name ?? ''}|${f.parameters ? JSON.stringify(Object.fromEntries(Object.entries(f.parameters).sort())) : ''}`;
}

/** Column-by-column: our Avro value schema (its Value record) against Debezium's JSON schema of `before`. */
export function diffColumnSchemas(ourEnvelope: { fields: AvroField[] }, theirs: { fields: Array<{ field: string; fields?: unknown[] }> }): { ours: string[]; theirs: string[] } {
  const before = ourEnvelope.fields.find((f) => f.name === 'before')!;
  const record = (before.type as unknown[]).find((x) => x !== 'null') as { fields: AvroField[] };
  const dbz = theirs.fields.find((f) => f.field === 'before')!.fields as Parameters<typeof connectColumn>[0][];
  return { ours: record.fields.map(avroColumn), theirs: dbz.map(connectColumn) };
}
