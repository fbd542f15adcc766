import { Rng } from '../../src/generator/rng.ts';

/**
 * The chaos suite's pure parts: which fault comes next (seeded, so a run is
 * replayed from its seed), whether another one still fits in the time
 * left, and the figures of the report. No I/O here; bench/chaos/run.ts does
 * the injecting and measuring.
 */
export const FAULT_KINDS = [
  'kill-capture', 'kill-consumer', 'kill-api', 'kill-registry', 'kill-redis', 'kill-redis-master', 'kill-broker', 'pg-restart', 'zombie-consumer',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * The kinds a stack offers: 'kill-redis' (SIGKILL of the one redis-server)
 * with a single Redis, 'kill-redis-master' (SIGKILL of a master, its
 * replica takes over, the node comes back as a replica) with a Redis
 * Cluster; every other kind on both.
 */
export function stackKinds(s: { redisCluster: boolean }): FaultKind[] {
  return FAULT_KINDS.filter((k) => k !== (s.redisCluster ? 'kill-redis' : 'kill-redis-master'));
}

/** Kinds the stack cannot take, as one line naming them; undefined when all fit. */
export function unfitKinds(kinds: readonly FaultKind[], s: { redisCluster: boolean }): string | undefined {
  const ok = new Set(stackKinds(s));
  const bad = kinds.filter((k) => !ok.has(k));
  if (bad.length === 0) return undefined;
  return `--kinds ${bad.join(', ')} needs ${s.redisCluster ? 'a single Redis (without --redis-cluster)' : 'a Redis Cluster (--redis-cluster)'}`;
}

export interface PlannedFault {
  kind: FaultKind;
  /** The process or server it hits: a member name for consumer faults, else the kind's one target. */
  target: string;
  /** Quiet time after the previous fault recovered, before this one. */
  gapMs: number;
  /** zombie-consumer: how long the member stays stopped (longer than its session timeout). */
  stopMs?: number;
}

export interface ScheduleOptions {
  seed: number;
  kinds?: readonly FaultKind[];
  /** Members a consumer kill may hit (warehouse members and the clickstream consumer). */
  consumerTargets: readonly string[];
  /** Members a zombie stop may hit (members of a group that can hand their partitions over). */
  zombieTargets: readonly string[];
  minGapMs: number;
  maxGapMs: number;
  /** Session timeout of the members: a zombie stays stopped this long plus 2-8 s. */
  sessionTimeoutMs: number;
}

/**
 * An endless seeded sequence of faults. Kinds come in rounds, each a
 * shuffled permutation of all kinds (like a shuffled deck dealt out and
 * reshuffled): a run of k rounds has every kind exactly k times, in random
 * order, and a short run of one round still meets every kind once.
 */
export class FaultSchedule {
  private readonly rng: Rng;
  private readonly kinds: readonly FaultKind[];
  private round: FaultKind[] = [];
  private readonly targetDecks = new Map<string, string[]>();

  constructor(private readonly o: ScheduleOptions) {
    if (o.minGapMs < 0 || o.maxGapMs < o.minGapMs) throw new RangeError(`gap range ${o.minGapMs}..${o.maxGapMs} ms is empty`);
    this.rng = new Rng(o.seed);
    this.kinds = o.kinds ?? stackKinds({ redisCluster: false });
    if (this.kinds.length === 0) throw new RangeError('no fault kinds to schedule');
    if (this.kinds.includes('kill-consumer') && o.consumerTargets.length === 0) throw new RangeError('kill-consumer needs a target');
    if (this.kinds.includes('zombie-consumer') && o.zombieTargets.length === 0) throw new RangeError('zombie-consumer needs a target');
  }

  next(): PlannedFault {
    if (this.round.length === 0) this.round = shuffle(this.rng, [...this.kinds]);
    const kind = this.round.shift()!;
    const gapMs = this.rng.int(this.o.minGapMs, this.o.maxGapMs);
    switch (kind) {
      case 'kill-consumer':
        return { kind, target: this.deal('kill', this.o.consumerTargets), gapMs };
      case 'zombie-consumer':
        return { kind, target: this.deal('zombie', this.o.zombieTargets), gapMs, stopMs: this.o.sessionTimeoutMs + this.rng.int(2000, 8000) };
      default:
        return { kind, target: DEFAULT_TARGETS[kind], gapMs };
    }
  }

  /** Targets of a kind are dealt like the kinds: every member is hit once before any is hit twice. */
  private deal(deck: string, targets: readonly string[]): string {
    let d = this.targetDecks.get(deck);
    if (!d || d.length === 0) this.targetDecks.set(deck, (d = shuffle(this.rng, [...targets])));
    return d.shift()!;
  }
}

const DEFAULT_TARGETS: Record<Exclude<FaultKind, 'kill-consumer' | 'zombie-consumer'>, string> = {
  'kill-capture': 'capture', 'kill-api': 'api', 'kill-registry': 'registry', 'kill-redis': 'redis', 'kill-redis-master': 'redis master', 'kill-broker': 'kafka', 'pg-restart': 'postgres',
};

/** Fisher-Yates with the seeded generator. */
export function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * Whether another fault may start: the fault count is below the bound and
 * the time left covers its gap, its own duration and a reserve (a
 * fault that could not be seen to recover before the end proves nothing).
 */
export function fitsAnother(p: { now: number; endAt: number; faultsSoFar: number; maxFaults: number; next: PlannedFault; reserveMs: number }): boolean {
  if (p.faultsSoFar >= p.maxFaults) return false;
  return p.now + p.next.gapMs + (p.next.stopMs ?? 0) + p.reserveMs <= p.endAt;
}

/** The q-quantile by nearest rank (q in 0..1) of a non-empty list; undefined when empty. */
export function quantile(values: readonly number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1];
}

export interface FaultRecord {
  n: number;
  kind: FaultKind;
  target: string;
  /** Seconds since the run started. */
  atS: number;
  /** zombie-consumer: the member was stopped this long; recovery counts from SIGCONT. */
  stopMs?: number;
  /** Time until every process made progress again; null when it did not within the stall bound. */
  recoveryMs: number | null;
  /** What had not recovered at the stall bound. */
  stalled?: string[];
  /** --lanes: how many faults of other lanes were under way when this one was injected. */
  overlapping?: number;
  /** What was still pending at the last look before recovery: where the time went. */
  slowest?: string[];
  detail?: string;
}

export interface KindSummary {
  kind: FaultKind;
  faults: number;
  recovered: number;
  p50Ms: number | null;
  maxMs: number | null;
}

/** Per kind and overall: count, recovered count, p50 and max recovery time. */
export function summarize(faults: readonly FaultRecord[]): { byKind: KindSummary[]; all: Omit<KindSummary, 'kind'> } {
  const of = (list: readonly FaultRecord[]) => {
    const times = list.map((f) => f.recoveryMs).filter((x): x is number => x !== null);
    return { faults: list.length, recovered: times.length, p50Ms: quantile(times, 0.5) ?? null, maxMs: times.length ? Math.max(...times) : null };
  };
  const kinds = FAULT_KINDS.filter((k) => faults.some((f) => f.kind === k));
  return { byKind: kinds.map((kind) => ({ kind, ...of(faults.filter((f) => f.kind === kind)) })), all: of(faults) };
}
