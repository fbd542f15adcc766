import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { readStoredOffsets } from '../../src/sinks/postgres/consumer-progress.ts';
import { quoted, type WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import type { Supervised } from './supervisor.ts';

/**
 * What "every process made progress again" means after a fault, measured
 * from outside through the processes' own endpoints and the stores:
 * - capture: its /metrics capture_confirmed_lsn reached the WAL position
 *   taken at the fault (everything committed before the fault is in Kafka
 *   and confirmed);
 * - every consumer member: its /metrics consumer_messages_applied_total
 *   grew since the fault (a restarted member: is above 0), each group is
 *   stable with every running member in it, and each group's offsets
 *   stored in Postgres reached the high watermarks taken at the fault
 *   (everything in Kafka then is applied, no partition left behind);
 * - Redis: every CLV row in the Redis outbox at the fault was written to
 *   Redis (the outbox holds no row with an id up to the largest id at the
 *   fault): after a Redis or Redis-master kill, the writes that failed
 *   meanwhile went through;
 * - API: GET /customers/:id/clv answers (200, or 404 for a customer without
 *   CLV); registry: GET /subjects 200.
 */
export interface Baseline {
  at: number;
  walLsn: bigint;
  /** Per member: pid and applied counter at the fault. */
  applied: Map<string, { pid: number | undefined; n: number }>;
  /** Per group: topic/partition -> high watermark at the fault. */
  highs: Map<string, Map<string, bigint>>;
  /** Largest Redis outbox id at the fault (0: empty). */
  outboxMax: bigint;
}

export interface GroupSpec {
  group: string;
  topics: string[];
  members: Supervised[];
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(t);
  }
}

async function http(port: number, path: string, ms = 2000): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(ms) });
  return { status: res.status, body: await res.text() };
}

/** Sum of a metric's samples (all label sets) in Prometheus text; undefined when absent. */
export function metricSum(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}

export async function metric(port: number, name: string): Promise<number | undefined> {
  const r = await http(port, '/metrics');
  return r.status === 200 ? metricSum(r.body, name) : undefined;
}

export async function highWatermarks(admin: Admin, topics: string[]): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for (const topic of topics) {
    for (const p of await withTimeout(admin.fetchTopicOffsets(topic), 3000, `offsets of ${topic}`)) out.set(`${topic}/${p.partition}`, BigInt(p.high));
  }
  return out;
}

export class ProgressProbe {
  constructor(private readonly o: {
    source: pg.Pool; warehouse: pg.Pool; admin: Admin; schemas: WarehouseSchemas;
    capture: Supervised; groups: GroupSpec[]; api: Supervised; registry: Supervised; apiCustomerId: () => number;
    /** The last high watermarks the background sampler read, for a fault taken while the broker does not answer. */
    lastHighs: () => Map<string, bigint> | undefined;
  }) {}

  async baseline(): Promise<Baseline> {
    const at = Date.now();
    const { rows } = await withTimeout(this.o.source.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'), 3000, 'WAL position');
    const applied = new Map<string, { pid: number | undefined; n: number }>();
    for (const g of this.o.groups) {
      for (const m of g.members) applied.set(m.name, { pid: m.pid, n: (await metric(m.spec.healthPort, 'consumer_messages_applied_total').catch(() => undefined)) ?? 0 });
    }
    const highs = new Map<string, Map<string, bigint>>();
    for (const g of this.o.groups) {
      const h = await highWatermarks(this.o.admin, g.topics).catch(() => this.o.lastHighs());
      highs.set(g.group, new Map([...(h ?? new Map<string, bigint>())].filter(([k]) => g.topics.some((t) => k.startsWith(`${t}/`)))));
    }
    const { meta } = quoted(this.o.schemas);
    const ob = await withTimeout(this.o.warehouse.query<{ m: string | null }>(`SELECT max(id)::text AS m FROM ${meta}.redis_outbox`), 3000, 'outbox')
      .then((r) => BigInt(r.rows[0]?.m ?? '0'), () => 0n);
    return { at, walLsn: parseLsn(rows[0]!.l), applied, highs, outboxMax: ob };
  }

  /**
   * What the processes and stores show now, read once for every fault being
   * measured (with --lanes several are at once): each check's raw reading,
   * judged against a baseline by pendingAt. A reading that fails is absent.
   */
  async observe(): Promise<Observation> {
    const at = Date.now();
    const soft = <T>(p: Promise<T>) => p.then((v) => v as T | undefined, () => undefined);
    const captureLsn = soft(metric(this.o.capture.spec.healthPort, 'capture_confirmed_lsn').then((c) => (c === undefined ? undefined : BigInt(Math.round(c)))));
    const members = new Map<string, { pid: number | undefined; applied: number | undefined }>();
    const groups = new Map<string, { stable: boolean; stored: Map<string, string> | undefined }>();
    const { meta } = quoted(this.o.schemas);
    const perGroup = this.o.groups.map(async (g) => {
      await Promise.all(g.members.map(async (m) => {
        const pid = m.pid;
        members.set(m.name, { pid, applied: await soft(metric(m.spec.healthPort, 'consumer_messages_applied_total')) });
      }));
      // Every running member is back in the group and the group is not rebalancing (a zombie rejoined).
      const stable = await soft(withTimeout(this.o.admin.describeGroups([g.group]), 3000, 'group').then((r) => {
        const d = r.groups[0];
        return d !== undefined && d.state === 'Stable' && d.members.length === g.members.filter((m) => m.running).length;
      }));
      const stored = await soft(withTimeout(readStoredOffsets(this.o.warehouse, this.o.schemas, g.group), 3000, 'stored offsets'));
      groups.set(g.group, { stable: stable === true, stored: stored as Map<string, string> | undefined });
    });
    const outbox = soft(withTimeout(this.o.warehouse.query<{ m: string | null }>(`SELECT min(id)::text AS m FROM ${meta}.redis_outbox`), 3000, 'outbox').then((r) => (r.rows[0]?.m ? BigInt(r.rows[0].m) : null)));
    // 404 is an answer too (a customer without orders has no CLV yet): what counts is that lookups are served.
    const api = soft(http(this.o.api.spec.healthPort, `/customers/${this.o.apiCustomerId()}/clv`).then((r) => [200, 404].includes(r.status)));
    const registry = soft(http(this.o.registry.spec.healthPort, '/subjects').then((r) => r.status === 200));
    await Promise.all(perGroup);
    return { at, captureLsn: await captureLsn, members, groups, outboxMinId: await outbox, api: (await api) === true, registry: (await registry) === true };
  }

  /** The check names pendingAt judges, in order. */
  checkNames(): string[] {
    return ['capture', ...this.o.groups.flatMap((g) => [...g.members.map((m) => m.name), `${g.group} membership`, `${g.group} offsets`]), 'redis outbox', 'api', 'registry'];
  }

  /** The checks an observation does not pass against the baseline (empty: recovered). */
  pendingAt(b: Baseline, obs: Observation): string[] {
    const out: string[] = [];
    if (obs.captureLsn === undefined || obs.captureLsn < b.walLsn) out.push('capture');
    for (const g of this.o.groups) {
      for (const m of g.members) {
        const ok = memberProgressed(b.applied.get(m.name), obs.members.get(m.name));
        if (!ok) out.push(m.name);
      }
      const gs = obs.groups.get(g.group);
      if (!gs?.stable) out.push(`${g.group} membership`);
      let offsets = gs?.stored !== undefined;
      for (const [k, high] of b.highs.get(g.group) ?? []) if (offsets && high > 0n && BigInt(gs!.stored!.get(k) ?? '0') < high) offsets = false;
      if (!offsets) out.push(`${g.group} offsets`);
    }
    if (b.outboxMax > 0n && (obs.outboxMinId === undefined || (obs.outboxMinId !== null && obs.outboxMinId <= b.outboxMax))) out.push('redis outbox');
    if (!obs.api) out.push('api');
    if (!obs.registry) out.push('registry');
    return out;
  }

  /** The processes that have not made progress since the baseline (empty: recovered). */
  async pending(b: Baseline): Promise<string[]> {
    return this.pendingAt(b, await this.observe());
  }
}

/**
 * Whether a consumer member applied messages since the baseline, from its
 * `consumer_messages_applied_total`. A new pid counts from 0. A process that
 * rebuilt its services after a retriable failure (runMain) also starts its
 * counters again from 0, under the same pid: a count below the baseline is
 * such a reset, and every message counted since came after it (the rule of
 * Prometheus' rate()).
 */
export function memberProgressed(before: { pid: number | undefined; n: number } | undefined, now: { pid: number | undefined; applied: number | undefined } | undefined): boolean {
  if (now?.applied === undefined) return false;
  if (before !== undefined && before.pid === now.pid && now.applied >= before.n) return now.applied > before.n;
  return now.applied > 0;
}

export interface Observation {
  /** When the reading started: it says nothing about what happened before. */
  at: number;
  captureLsn: bigint | undefined;
  members: Map<string, { pid: number | undefined; applied: number | undefined }>;
  groups: Map<string, { stable: boolean; stored: Map<string, string> | undefined }>;
  /** Smallest id left in the Redis outbox; null: empty; undefined: not read. */
  outboxMinId: bigint | null | undefined;
  api: boolean;
  registry: boolean;
}

/**
 * One observation at a time for every fault being measured: a caller asks
 * for one started no earlier than a moment (its fault's injection, or just
 * after the one it saw last) and shares whichever is in flight if it
 * qualifies; a new one starts at most every `minIntervalMs`, so eight
 * lanes polling cost about what one did.
 */
export class SharedObserver {
  private cur: { at: number; p: Promise<Observation> } | undefined;

  constructor(private readonly observe: () => Promise<Observation>, private readonly minIntervalMs = 250) {}

  async after(t: number): Promise<Observation> {
    for (;;) {
      const c = this.cur;
      if (c && c.at >= t) return c.p;
      if (c) {
        await c.p.catch(() => undefined);
        if (this.cur !== c) continue;
        const wait = c.at + this.minIntervalMs - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (this.cur !== c) continue;
      }
      const at = Date.now();
      const p = this.observe();
      this.cur = { at, p };
      return p;
    }
  }
}

/**
 * Recovery from one fault: each check counts once it passed in an
 * observation taken after the fault. Latched rather than all at once:
 * with lanes another fault may knock a process over again after it had
 * recovered from this one, which is that fault's recovery, not this one's.
 */
export class RecoveryLatch {
  private readonly passed = new Set<string>();

  constructor(private readonly names: readonly string[]) {}

  /** Notes the checks that pass now; returns those that have not passed yet. */
  note(pendingNow: readonly string[]): string[] {
    const now = new Set(pendingNow);
    for (const n of this.names) if (!now.has(n)) this.passed.add(n);
    return this.names.filter((n) => !this.passed.has(n));
  }
}

export interface SlotSample {
  at: number;
  confirmed: bigint;
  /** High watermarks of the orders topic read right after the slot position. */
  highs: Map<number, bigint>;
}

/**
 * Samples, while the run goes on, the slot's confirmed_flush_lsn and then
 * what the orders topic holds. Read in that order, a sample is a claim:
 * every order committed at or before `confirmed` has a record below
 * `highs`. checkSlotSamples verifies the claims against the topic's content.
 */
export class SlotSampler {
  readonly samples: SlotSample[] = [];
  lastHighs: Map<string, bigint> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(private readonly o: { source: pg.Pool; admin: Admin; slot: string; ordersTopic: string; allTopics: string[]; everyMs: number }) {}

  start(): void {
    this.timer ??= setInterval(() => void this.sample(), this.o.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const { rows } = await withTimeout(this.o.source.query<{ l: string | null }>('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [this.o.slot]), 3000, 'slot');
      const l = rows[0]?.l;
      if (!l) return;
      const confirmed = parseLsn(l);
      const all = await highWatermarks(this.o.admin, this.o.allTopics);
      this.lastHighs = all;
      const highs = new Map<number, bigint>();
      for (const [k, v] of all) if (k.startsWith(`${this.o.ordersTopic}/`)) highs.set(Number(k.slice(this.o.ordersTopic.length + 1)), v);
      this.samples.push({ at: Date.now(), confirmed, highs });
    } catch {
      // a server is down: no claim can be read now
    } finally {
      this.busy = false;
    }
  }
}

/**
 * Violations of the slot claims: an order committed at or before a sampled
 * confirmed_flush_lsn (its noted WAL position is at or past its commit)
 * whose first record in the topic is not below the sampled high watermark
 * of its partition, or is absent altogether.
 */
export function checkSlotSamples(samples: readonly SlotSample[], orderLsns: ReadonlyArray<{ lsn: bigint; maxOrderId: number }>, firstRecord: ReadonlyMap<number, { partition: number; offset: bigint }>, inSource: ReadonlySet<number>): Array<{ at: number; orderId: number; why: string }> {
  const out: Array<{ at: number; orderId: number; why: string }> = [];
  const sorted = [...orderLsns].sort((a, b) => (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0));
  for (const s of samples) {
    let covered = 0;
    for (const o of sorted) if (o.lsn <= s.confirmed) covered = Math.max(covered, o.maxOrderId);
    for (let id = 1; id <= covered; id++) {
      const r = firstRecord.get(id);
      // An order the generator failed to write (its id was skipped) has neither a record nor a source row.
      if (r === undefined) {
        if (inSource.has(id)) out.push({ at: s.at, orderId: id, why: `in the source, no record in the topic; the slot was at ${s.confirmed}` });
        continue;
      }
      const high = s.highs.get(r.partition);
      if (high !== undefined && r.offset >= high) out.push({ at: s.at, orderId: id, why: `first record at offset ${r.offset} of partition ${r.partition}, high watermark ${high} when the slot was at ${s.confirmed}` });
    }
  }
  return out;
}
