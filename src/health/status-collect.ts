import { readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import kafkajs, { type Admin } from 'kafkajs';
import pg from 'pg';
import { kafkaClientConfig, type KafkaConnection } from '../config/kafka.ts';
import { RETENTION_GAP_REMEDY } from '../consumer/stored-offsets.ts';
import { errorMessage } from '../errors.ts';
import { readStoredOffsets } from '../sinks/postgres/consumer-progress.ts';
import { quoted, type WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { readPartitionLag, totalLag } from './group-lag.ts';
import { formatBytes, readSlotWal } from './slot-wal.ts';

/** What `status` looks at (src/cli/status.ts builds it from the environment). */
export interface StatusTargets {
  processes: ProcessTarget[];
  groups: GroupTarget[];
  sourceUrl: string;
  warehouseUrl: string;
  kafkaBrokers: string[];
  /** Brokers with TLS and SASL; when absent, plain connections to kafkaBrokers. */
  kafka?: KafkaConnection;
  /** Topics named `<prefix>.….dlq` (and each group topic's `.dlq`) are counted. */
  topicPrefix: string;
  schemas: WarehouseSchemas;
  slot: string;
  walWarnBytes: bigint;
  /** Redis key prefix of the warehouse group's outbox rows. */
  redisKeyPrefix: string;
  timeoutMs: number;
}

export interface ProcessTarget {
  name: string;
  /** `.stack/app/<name>.pid` as the demo writes it; absent for processes run another way. */
  pidFile?: string;
  readyUrl: string;
  headers?: Record<string, string>;
  /** The setting that turned the process's health listener off (port -1): nothing to probe. */
  disabledBy?: string;
  /** CA bundle for an https readyUrl (the registry's SCHEMA_REGISTRY_CA_FILE); fetch cannot take one. */
  ca?: Buffer;
}

export interface GroupTarget {
  group: string;
  topics: string[];
}

export type State = 'ok' | 'warn' | 'unhealthy' | 'down' | 'error';

export interface ProcessStatus {
  name: string;
  state: State;
  pid: number | null;
  pidAlive: boolean | null;
  /** HTTP status of /readyz, or null when it did not answer. */
  http: number | null;
  detail: string;
}

export interface GroupStatus {
  group: string;
  state: State;
  lag: string | null;
  partitions: number;
  lastAppliedAt: string | null;
  detail: string;
}

export interface PipelineStatus {
  ok: boolean;
  checkedAt: string;
  processes: ProcessStatus[];
  groups: GroupStatus[];
  slot: { name: string; state: State; retainedBytes: string | null; unconfirmedBytes: string | null; walStatus: string | null; active: boolean | null; activePid: number | null; warnBytes: string; detail: string };
  deadLetters: { state: State; total: string | null; topics: Array<{ topic: string; messages: string }>; detail: string };
  outbox: { state: State; depth: number | null; oldestAgeSeconds: number | null; detail: string };
  problems: string[];
  warnings: string[];
}

async function readPid(file: string | undefined): Promise<number | null> {
  if (!file) return null;
  try {
    const n = Number((await readFile(file, 'utf8')).trim());
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function httpsWithCa(url: string, headers: Record<string, string> | undefined, ca: Buffer, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { headers, ca, timeout: timeoutMs }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function httpGet(url: string, headers: Record<string, string> | undefined, timeoutMs: number, ca?: Buffer): Promise<{ status: number; body: unknown }> {
  let res: { status: number; text: string };
  if (ca && url.startsWith('https:')) res = await httpsWithCa(url, headers, ca, timeoutMs);
  else {
    const r = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
    res = { status: r.status, text: await r.text() };
  }
  const text = res.text;
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body };
}

export async function probeProcess(t: ProcessTarget, timeoutMs: number): Promise<ProcessStatus> {
  const pid = await readPid(t.pidFile);
  const pidAlive = pid === null ? null : alive(pid);
  const base = { name: t.name, pid, pidAlive };
  if (t.disabledBy) {
    const running = pidAlive ? `pid ${pid} runs` : pid !== null ? `not running (stale pidfile, pid ${pid})` : 'no pidfile';
    return { ...base, state: 'warn', http: null, detail: `no health endpoint (${t.disabledBy}=-1); ${running}` };
  }
  let r: { status: number; body: unknown };
  try {
    r = await httpGet(t.readyUrl, t.headers, timeoutMs, t.ca);
  } catch (err) {
    const why = errorMessage((err as { cause?: unknown }).cause ?? err);
    if (pidAlive) return { ...base, state: 'unhealthy', http: null, detail: `pid ${pid} runs but ${t.readyUrl} does not answer (${why})` };
    return { ...base, state: 'down', http: null, detail: pid !== null ? `not running (stale pidfile, pid ${pid}); ${t.readyUrl} does not answer` : `${t.readyUrl} does not answer (${why})` };
  }
  const body = (typeof r.body === 'object' && r.body !== null ? r.body : {}) as { reason?: string; pid?: number };
  const servedBy = typeof body.pid === 'number' ? body.pid : null;
  const who = servedBy !== null ? `pid ${servedBy}` : pid !== null ? `pid ${pid}` : 'pid ?';
  const p = { ...base, pid: servedBy ?? pid, http: r.status };
  if (r.status === 200) return { ...p, state: 'ok', detail: `${who}, ready` };
  if (r.status === 503) return { ...p, state: 'unhealthy', detail: `${who}, unready: ${body.reason ?? JSON.stringify(r.body)}` };
  if (r.status === 404) {
    // An older build without /readyz: alive is all we can say.
    return { ...p, state: 'warn', detail: `${who}, answers but has no /readyz` };
  }
  return { ...p, state: 'unhealthy', detail: `${who}, /readyz answered ${r.status}` };
}

const isMissingTable = (err: unknown) => (err as { code?: string })?.code === '42P01' || (err as { code?: string })?.code === '3F000';

async function groupStatus(admin: Admin | null, wh: pg.Pool, schemas: WarehouseSchemas, g: GroupTarget): Promise<GroupStatus> {
  const base = { group: g.group, lag: null, partitions: 0, lastAppliedAt: null };
  let stored: Map<string, string>;
  let last: string | null = null;
  try {
    stored = await readStoredOffsets(wh, schemas, g.group);
    const { meta } = quoted(schemas);
    const { rows } = await wh.query<{ t: Date | null }>(`SELECT max(updated_at) AS t FROM ${meta}.consumer_offsets WHERE consumer_group = $1`, [g.group]);
    last = rows[0]?.t ? rows[0].t.toISOString() : null;
  } catch (err) {
    if (!isMissingTable(err)) return { ...base, state: 'error', detail: `cannot read stored offsets: ${errorMessage(err)}` };
    stored = new Map();
  }
  if (!admin) return { ...base, lastAppliedAt: last, state: 'error', detail: 'Kafka unreachable: lag unknown' };
  try {
    const parts = await readPartitionLag(admin, stored, g.topics);
    const lag = totalLag(parts);
    const behind = parts.filter((p) => p.lag > 0n).map((p) => `${p.topic}/${p.partition}:${p.lag}`);
    // Changes lost to retention: the tables miss them until re-snapshot + rebuild, so the group is unhealthy, not merely behind.
    const gaps = parts.filter((p) => p.stored !== null && p.stored < p.low)
      .map((p) => `${p.topic}/${p.partition} offsets ${p.stored}..${p.low - 1n} (${p.low - p.stored!} messages)`);
    return {
      group: g.group, lag: lag.toString(), partitions: parts.length, lastAppliedAt: last,
      state: gaps.length > 0 ? 'unhealthy' : 'ok',
      detail: [parts.length === 0 ? 'no topics yet' : `${parts.length} partition(s)`, behind.length > 0 ? `behind: ${behind.slice(0, 4).join(' ')}${behind.length > 4 ? ' …' : ''}` : '',
        gaps.length > 0 ? `changes lost to retention (stored offset before the log start): ${gaps.join(', ')}; ${RETENTION_GAP_REMEDY}` : '']
        .filter(Boolean).join('; '),
    };
  } catch (err) {
    return { ...base, lastAppliedAt: last, state: 'error', detail: `cannot read Kafka offsets: ${errorMessage(err)}` };
  }
}

/** The connections a status check reads through: one Kafka admin, the warehouse and the source database. */
export interface StatusClients {
  admin: Admin;
  wh: pg.Pool;
  src: pg.Pool;
  close(): Promise<void>;
}

/** Opens (lazily: nothing connects before the first check) the clients for `targets`; close() releases them. */
export function openStatusClients(t: StatusTargets): StatusClients {
  const kafka = new kafkajs.Kafka(kafkaClientConfig(t.kafka ?? { brokers: t.kafkaBrokers, protocol: 'PLAINTEXT' }, { clientId: 'shopstream-status', logLevel: kafkajs.logLevel.NOTHING, connectionTimeout: t.timeoutMs, requestTimeout: t.timeoutMs * 2, retry: { retries: 1, initialRetryTime: 200 } }));
  const admin = kafka.admin();
  const wh = new pg.Pool({ connectionString: t.warehouseUrl, max: 2, connectionTimeoutMillis: t.timeoutMs, application_name: 'shopstream-status' });
  const src = new pg.Pool({ connectionString: t.sourceUrl, max: 1, connectionTimeoutMillis: t.timeoutMs, application_name: 'shopstream-status' });
  wh.on('error', () => {});
  src.on('error', () => {});
  return {
    admin, wh, src,
    close: async () => {
      await admin.disconnect().catch(() => {});
      await Promise.all([wh.end().catch(() => {}), src.end().catch(() => {})]);
    },
  };
}

/**
 * Collects everything `status` shows; never throws (an unreachable part
 * becomes an `error` row). A process that checks again and again (the status
 * page's sampler) passes its own long-lived clients; without them the check
 * opens its own and closes them.
 */
export async function collectStatus(t: StatusTargets, held?: StatusClients): Promise<PipelineStatus> {
  const clients = held ?? openStatusClients(t);
  const { admin, wh, src } = clients;
  const problems: string[] = [];
  const warnings: string[] = [];
  try {
    const kafkaOk = await admin.connect().then(() => true, (err: unknown) => { problems.push(`Kafka ${t.kafkaBrokers.join(',')}: ${errorMessage(err)}`); return false; });
    const [processes, groups, slot, deadLetters, outbox] = await Promise.all([
      Promise.all(t.processes.map((p) => probeProcess(p, t.timeoutMs))),
      Promise.all(t.groups.map((g) => groupStatus(kafkaOk ? admin : null, wh, t.schemas, g))),
      slotStatus(src, t),
      kafkaOk ? dlqStatus(admin, t) : Promise.resolve({ state: 'error' as State, total: null, topics: [], detail: 'Kafka unreachable' }),
      outboxStatus(wh, t),
    ]);
    for (const p of processes) if (p.state === 'down' || p.state === 'unhealthy' || p.state === 'error') problems.push(`${p.name}: ${p.detail}`);
    else if (p.state === 'warn') warnings.push(`${p.name}: ${p.detail}`);
    for (const g of groups) if (g.state === 'error' || g.state === 'unhealthy') problems.push(`group ${g.group}: ${g.detail}`); else if (g.state === 'warn') warnings.push(`group ${g.group}: ${g.detail}`);
    if (slot.state === 'unhealthy' || slot.state === 'error') problems.push(`slot ${slot.name}: ${slot.detail}`); else if (slot.state === 'warn') warnings.push(`slot ${slot.name}: ${slot.detail}`);
    if (deadLetters.state === 'warn') warnings.push(`dead letters: ${deadLetters.detail}`);
    if (outbox.state === 'error') problems.push(`redis outbox: ${outbox.detail}`); else if (outbox.state === 'warn') warnings.push(`redis outbox: ${outbox.detail}`);
    return { ok: problems.length === 0, checkedAt: new Date().toISOString(), processes, groups, slot, deadLetters, outbox, problems, warnings };
  } finally {
    if (!held) await clients.close();
  }
}

async function slotStatus(src: pg.Pool, t: StatusTargets): Promise<PipelineStatus['slot']> {
  const base = { name: t.slot, retainedBytes: null, unconfirmedBytes: null, walStatus: null, active: null, activePid: null, warnBytes: t.walWarnBytes.toString() };
  try {
    const w = await readSlotWal(src, t.slot);
    if (!w) return { ...base, state: 'warn', detail: 'no such replication slot (the capture creates it on first start)' };
    const over = w.retainedBytes > t.walWarnBytes;
    const lost = w.walStatus === 'lost';
    const detail = [
      `retains ${formatBytes(w.retainedBytes)} of WAL (warn at ${formatBytes(t.walWarnBytes)})`,
      `unconfirmed ${formatBytes(w.unconfirmedBytes)}`,
      w.active ? `active, walsender pid ${w.activePid}` : 'inactive (no capture attached)',
      w.walStatus ? `wal_status ${w.walStatus}` : '',
      w.safeWalSize !== null ? `safe_wal_size ${formatBytes(w.safeWalSize)}` : '',
      lost ? 'INVALIDATED by max_slot_wal_keep_size: drop the slot and re-snapshot (docs/operations.md, WAL safety)' : '',
    ].filter(Boolean).join('; ');
    return {
      name: t.slot, state: lost ? 'unhealthy' : over ? 'warn' : 'ok', retainedBytes: w.retainedBytes.toString(), unconfirmedBytes: w.unconfirmedBytes.toString(),
      walStatus: w.walStatus, active: w.active, activePid: w.activePid, warnBytes: t.walWarnBytes.toString(), detail,
    };
  } catch (err) {
    return { ...base, state: 'error', detail: `cannot read pg_replication_slots: ${errorMessage(err)}` };
  }
}

async function dlqStatus(admin: Admin, t: StatusTargets): Promise<PipelineStatus['deadLetters']> {
  try {
    const groupDlqs = new Set(t.groups.flatMap((g) => g.topics.map((x) => `${x}.dlq`)));
    const dlqs = (await admin.listTopics()).filter((x) => x.endsWith('.dlq') && (x.startsWith(`${t.topicPrefix}.`) || groupDlqs.has(x))).sort();
    const topics: Array<{ topic: string; messages: string }> = [];
    let total = 0n;
    for (const topic of dlqs) {
      let n = 0n;
      for (const p of await admin.fetchTopicOffsets(topic)) n += BigInt(p.high) - BigInt(p.low);
      total += n;
      topics.push({ topic, messages: n.toString() });
    }
    const nonEmpty = topics.filter((x) => x.messages !== '0');
    return {
      state: total > 0n ? 'warn' : 'ok', total: total.toString(), topics,
      detail: total > 0n ? nonEmpty.map((x) => `${x.topic}: ${x.messages}`).join(', ') : `${topics.length} dead-letter topic(s), all empty`,
    };
  } catch (err) {
    return { state: 'error', total: null, topics: [], detail: `cannot read dead-letter topics: ${errorMessage(err)}` };
  }
}

async function outboxStatus(wh: pg.Pool, t: StatusTargets): Promise<PipelineStatus['outbox']> {
  try {
    const { meta } = quoted(t.schemas);
    const { rows } = await wh.query<{ n: string; age: number | null }>(
      `SELECT count(*)::text AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM ${meta}.redis_outbox WHERE key_prefix = $1`, [t.redisKeyPrefix]);
    const depth = Number(rows[0]!.n);
    const age = rows[0]!.age === null ? null : Math.round(rows[0]!.age);
    // Rows normally leave within a second; an old one means Redis has been away.
    const stale = age !== null && age > 60;
    return { state: stale ? 'warn' : 'ok', depth, oldestAgeSeconds: age, detail: depth === 0 ? 'empty' : `${depth} row(s) waiting for Redis, oldest ${age} s` };
  } catch (err) {
    if (isMissingTable(err)) return { state: 'ok', depth: 0, oldestAgeSeconds: null, detail: 'no outbox table yet (warehouse not migrated)' };
    return { state: 'error', depth: null, oldestAgeSeconds: null, detail: `cannot read the outbox: ${errorMessage(err)}` };
  }
}

/** The `.stack/app/<name>.pid` path the demo writes. */
export const pidFileIn = (dir: string, name: string) => path.join(dir, `${name}.pid`);
