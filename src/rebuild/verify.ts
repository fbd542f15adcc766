import type pg from 'pg';
import { TABLE_NAMES } from '../consumer/tables.ts';
import { batchChecks, beginVerifySnapshot, diffDerivedTablesInSnapshot, dropRecomputeTables, prepareRecomputeTables, type TableDiff } from '../../consumers/warehouse/batch-recompute.ts';
import type { ClvThresholds } from '../../consumers/warehouse/derived-sql.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { dataChecks, runDataChecks, type CheckResult } from './checks.ts';
import { diffStagingWithSource, type SourceTableDiff } from './source-compare.ts';

/**
 * What `npm run verify` checks, as a library (the CLI and the replay tests
 * use it): every derived table against its batch recomputation from
 * staging, the data tests of checks.ts, and optionally staging against the
 * source database.
 */
export interface VerifyReport {
  ok: boolean;
  schemas: WarehouseSchemas;
  recompute: Array<TableDiff & { keys: { missing: string[]; unexpected: string[] } }>;
  checks: CheckResult[];
  source?: SourceTableDiff[];
  durationMs: number;
}

/** The column(s) naming a row of each derived table, for "first differing keys". */
const TABLE_KEYS: Record<string, string[]> = {
  dim_products: ['product_id'],
  dim_customers: ['customer_key'],
  dim_date: ['date_key'],
  fact_orders: ['order_item_key'],
  customer_lifetime_value: ['customer_id'],
  mart_sales: ['date_key', 'category'],
  order_fulfillment: ['order_id'],
};

function keyOf(table: string, row: unknown): string {
  const r = row as Record<string, unknown>;
  return (TABLE_KEYS[table] ?? Object.keys(r).slice(0, 1)).map((k) => String(r[k])).join('/');
}

export interface VerifyOptions {
  thresholds?: ClvThresholds;
  /** Staging against the source: the source connection and its schema. */
  source?: { client: pg.ClientBase; schema: string };
  sampleSize?: number;
  /** After each comparison or check: how many of `total` are done. */
  onProgress?: (done: number, total: number) => void;
}

export async function runVerify(client: pg.ClientBase, schemas: WarehouseSchemas, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const tables = batchChecks(schemas, opts.thresholds);
  // Before the snapshot: a read-only transaction cannot create the
  // temporary tables the recomputation is kept in (batch-recompute.ts).
  const columns = await prepareRecomputeTables(client, tables);
  try {
    // One snapshot for everything: each consumer batch commits staging and
    // derived rows together, so a snapshot is consistent even while the
    // consumer runs, and verify never reports a batch half seen. READ ONLY:
    // verify writes nothing but its own temporary tables.
    await beginVerifySnapshot(client);
    try {
      const total = tables.length + dataChecks(schemas).length + (opts.source ? TABLE_NAMES.length : 0);
      let done = 0;
      const step = () => opts.onProgress?.(++done, total);
      opts.onProgress?.(0, total);
      const diffs = await diffDerivedTablesInSnapshot(client, tables, columns, step, opts.sampleSize);
      const recompute = diffs.map((d) => ({
        ...d,
        keys: { missing: d.samples.missing.map((r) => keyOf(d.table, r)), unexpected: d.samples.unexpected.map((r) => keyOf(d.table, r)) },
      }));
      const checks = await runDataChecks(client, schemas, opts.sampleSize, step);
      const source = opts.source ? await diffStagingWithSource(opts.source.client, opts.source.schema, client, schemas.staging, { sampleSize: opts.sampleSize, onTable: step }) : undefined;
      const ok = recompute.every((d) => d.missing === 0 && d.unexpected === 0) && checks.every((c) => c.failures === 0)
        && (source ?? []).every((s) => s.missing === 0 && s.unexpected === 0 && s.differing === 0);
      return { ok, schemas, recompute, checks, source, durationMs: Date.now() - started };
    } finally {
      await client.query('ROLLBACK').catch(() => {});
    }
  } finally {
    // On a broken connection this fails too; the error that broke it is the one to see.
    await dropRecomputeTables(client, tables).catch(() => {});
  }
}

function sampleText(s: Record<string, unknown>): string {
  return Object.entries(s).map(([k, v]) => `${k}=${v === null ? 'null' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ');
}

/** The human report: one line per table or check, details only for failures. */
export function formatReport(r: VerifyReport): string {
  const lines: string[] = [`verify ${r.schemas.staging} / ${r.schemas.analytics}: ${r.ok ? 'OK' : 'FAILED'} (${(r.durationMs / 1000).toFixed(1)} s)`];
  lines.push('', 'derived tables vs batch recomputation from staging:');
  for (const d of r.recompute) {
    if (d.missing === 0 && d.unexpected === 0) {
      lines.push(`  ok    ${d.table}`);
      continue;
    }
    lines.push(`  FAIL  ${d.table}: ${d.missing} expected row(s) missing or different, ${d.unexpected} row(s) unexpected or different`);
    const both = d.keys.missing.filter((k) => d.keys.unexpected.includes(k));
    if (both.length) lines.push(`        differing values at key ${both.join(', ')}`);
    const onlyMissing = d.keys.missing.filter((k) => !both.includes(k));
    const onlyExtra = d.keys.unexpected.filter((k) => !both.includes(k));
    if (onlyMissing.length) lines.push(`        missing row(s) at key ${onlyMissing.join(', ')}`);
    if (onlyExtra.length) lines.push(`        unexpected row(s) at key ${onlyExtra.join(', ')}`);
    for (const s of d.samples.missing.slice(0, 3)) lines.push(`        expected: ${sampleText(s as Record<string, unknown>)}`);
    for (const s of d.samples.unexpected.slice(0, 3)) lines.push(`        found:    ${sampleText(s as Record<string, unknown>)}`);
  }
  lines.push('', 'data checks:');
  for (const c of r.checks) {
    if (c.failures === 0) {
      lines.push(`  ok    ${c.name}`);
      continue;
    }
    lines.push(`  FAIL  ${c.name}: ${c.failures} row(s) in ${c.table}`);
    for (const s of c.samples) lines.push(`        ${sampleText(s)}`);
  }
  if (r.source) {
    lines.push('', 'staging vs source:');
    for (const s of r.source) {
      const bad = s.missing + s.unexpected + s.differing;
      if (bad === 0) {
        lines.push(`  ok    stg_${s.table} (${s.sourceRows} rows)`);
        continue;
      }
      lines.push(`  FAIL  stg_${s.table}: ${s.missing} missing, ${s.unexpected} unexpected, ${s.differing} differing (source ${s.sourceRows}, staging ${s.stagingRows} rows)`);
      for (const kind of ['missing', 'unexpected', 'differing'] as const) {
        if (s.samples[kind].length) lines.push(`        ${kind} key(s): ${s.samples[kind].join('; ')}`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}
