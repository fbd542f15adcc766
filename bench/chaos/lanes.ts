import { FaultSchedule, type FaultKind, type PlannedFault, type ScheduleOptions } from './schedule.ts';

/**
 * Fault lanes (`npm run chaos -- --lanes`): one lane per kind, and for the
 * member kinds (kill-consumer, zombie-consumer) one per member, each
 * injecting its own kind in a loop (fault, its recovery, a short gap), all
 * lanes at once, so faults of different kinds overlap as they would in
 * production, and a 20-minute run holds far more of each kind than one
 * fault after the other. The pure parts, unit-tested: each lane's seeded
 * schedule, the resources a fault holds, and the guard that keeps faults
 * on the same resource apart (bench/chaos/chaos.ts runs the lanes).
 */

/**
 * A lane's own seed, derived from the run's seed and its name (the kind, or
 * kind:member): a lane's faults (targets, gaps, zombie stops) replay from the
 * run's seed whatever the other lanes do, and no two lanes share a sequence.
 */
export function laneSeed(seed: number, name: string): number {
  // FNV-1a over the seed and the lane's name: a well-spread 32-bit value.
  let h = 0x811c9dc5;
  for (const ch of `${seed}:${name}`) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export interface Lane {
  /** The kind, or kind:member for the member kinds. */
  name: string;
  kind: FaultKind;
  schedule: FaultSchedule;
}

/**
 * The lanes of a run, each dealing only its kind (and member), seeded by
 * laneSeed. A member kind gets a lane per member: one lane for three members
 * hit each member every third turn, and the member lanes, whose faults each
 * hold a member until the group recovered, were the ones short of 50 faults
 * in 20 minutes (kill-consumer 36, zombie-consumer 26 against ~37 of every
 * other kind). The per-kind bound is shared by a kind's lanes (laneFits).
 */
export function laneSchedules(o: ScheduleOptions & { kinds: readonly FaultKind[] }): Lane[] {
  return o.kinds.flatMap((kind): Lane[] => {
    const members = kind === 'kill-consumer' ? o.consumerTargets : kind === 'zombie-consumer' ? o.zombieTargets : null;
    if (!members) return [{ name: kind, kind, schedule: new FaultSchedule({ ...o, seed: laneSeed(o.seed, kind), kinds: [kind] }) }];
    return members.map((m) => {
      const name = `${kind}:${m}`;
      return { name, kind, schedule: new FaultSchedule({ ...o, seed: laneSeed(o.seed, name), kinds: [kind], consumerTargets: [m], zombieTargets: [m] }) };
    });
  });
}

/**
 * Lane i's first fault comes i x 2.5 s later than lane 0's: eight faults in
 * the same second would restart five processes and a JVM at once, and the
 * lanes would then stay in step (each waits for the slowest recovery).
 */
export function laneStartDelayMs(lane: number): number {
  return lane * 2500;
}

/**
 * What a fault holds from its injection until it recovered. Two faults on
 * one resource never overlap: a consumer member is not killed while a
 * zombie stop of it is being measured (the SIGCONT would go to the
 * restarted process and the zombie would prove nothing), and the server
 * faults each hold their server. The cluster-wide conditions (a broker is
 * killed only with every partition's ISR full, a Redis master only with
 * every master's replica in sync) are waited for by the fault itself; that
 * no second fault of that server comes meanwhile is this resource.
 */
export function faultResources(f: Pick<PlannedFault, 'kind' | 'target'>): string[] {
  switch (f.kind) {
    case 'kill-consumer':
    case 'zombie-consumer':
      return [`member:${f.target}`];
    case 'kill-broker':
      return ['kafka'];
    case 'kill-redis':
    case 'kill-redis-master':
      return ['redis'];
    case 'pg-restart':
      return ['postgres'];
    default:
      return [`process:${f.target}`];
  }
}

/**
 * A mutex per resource name, first come first served. acquire takes every
 * named resource at once or waits (never some now and the rest later, so two
 * faults wanting the same two cannot deadlock); release gives them back.
 */
export class ResourceGuard {
  private readonly held = new Set<string>();
  private readonly waiting: Array<{ names: string[]; grant: () => void }> = [];

  /** Resources held now (for the report's log and the tests). */
  get holding(): string[] {
    return [...this.held].sort();
  }

  acquire(names: readonly string[]): Promise<() => void> {
    const want = [...new Set(names)];
    return new Promise((resolve) => {
      const grant = () => {
        for (const n of want) this.held.add(n);
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          for (const n of want) this.held.delete(n);
          this.pump();
        });
      };
      this.waiting.push({ names: want, grant });
      this.pump();
    });
  }

  /**
   * Grants waiters in arrival order; a waiter whose resources are free is
   * granted even if an earlier one still waits for others, unless that earlier
   * one wants one of them (it would starve otherwise).
   */
  private pump(): void {
    const blocked = new Set<string>();
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i]!;
      if (w.names.every((n) => !this.held.has(n) && !blocked.has(n))) {
        this.waiting.splice(i, 1);
        w.grant();
      } else {
        for (const n of w.names) blocked.add(n);
        i++;
      }
    }
  }
}

/**
 * Whether a lane may start another fault: its kind (over all of the kind's
 * lanes) is short of the per-kind bound, the run of the total, and the time left covers the gap,
 * the fault's own stop time and the reserve (a fault that cannot be seen to
 * recover before the end proves nothing).
 */
export function laneFits(p: { now: number; endAt: number; kindSoFar: number; faultsPerKind?: number; faultsSoFar: number; maxFaults: number; next: PlannedFault; reserveMs: number }): boolean {
  if (p.faultsPerKind !== undefined && p.kindSoFar >= p.faultsPerKind) return false;
  if (p.faultsSoFar >= p.maxFaults) return false;
  return p.now + p.next.gapMs + (p.next.stopMs ?? 0) + p.reserveMs <= p.endAt;
}

