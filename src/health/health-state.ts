import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../logger.ts';

/** What one named condition says about the process. */
export interface ConditionState {
  healthy: boolean;
  /** One line for operators: why it is unhealthy (or what it is doing). */
  detail?: string;
}

export interface ConditionReport extends ConditionState {
  /** When the condition last changed between healthy and unhealthy (ms since the epoch). */
  sinceMs: number;
}

export interface Readiness {
  ready: boolean;
  /** `name: detail` of every unhealthy condition, for the 503 body and the log. */
  reasons: string[];
  conditions: Record<string, ConditionReport>;
}

/**
 * A process's readiness as a set of named conditions (started, kafka-group,
 * watchdog, replication, retention-gap, ...), each healthy or not with a
 * detail. The process is ready when every condition is healthy: anything
 * can mark itself unhealthy without knowing the others, and `/readyz`,
 * the `health_condition` gauge and `npm run status` all read this one
 * place. A condition changing state is logged (warn going bad, info
 * recovering), so a stall is visible in the log as well as on the probe.
 */
export class HealthState {
  private readonly conditions = new Map<string, ConditionReport>();
  private readonly gauge: Gauge<'condition'> | undefined;

  constructor(
    registry?: Registry,
    private readonly log?: Logger,
    private readonly now: () => number = Date.now,
  ) {
    if (registry) {
      this.gauge = new Gauge({
        name: 'health_condition', help: 'Each named health condition of the process: 1 healthy, 0 unhealthy (see /readyz for the detail).',
        labelNames: ['condition'] as const, registers: [registry],
      });
      const self = this;
      new Gauge({
        name: 'health_ready', help: '1 when every health condition is healthy (/readyz answers 200), else 0.', registers: [registry],
        collect() { this.set(self.readiness().ready ? 1 : 0); },
      });
    }
  }

  /**
   * Sets a named condition. The public hook for any part of a process that
   * finds it cannot do its job (e.g. `setCondition('retention-gap',
   * { healthy: false, detail: 'orders/0: offsets 10..99 lost' })`).
   */
  setCondition(name: string, state: ConditionState): void {
    const prev = this.conditions.get(name);
    const changed = !prev || prev.healthy !== state.healthy;
    this.conditions.set(name, { healthy: state.healthy, detail: state.detail, sinceMs: changed ? this.now() : prev.sinceMs });
    this.gauge?.set({ condition: name }, state.healthy ? 1 : 0);
    if (!changed) return;
    if (!state.healthy) this.log?.warn({ condition: name, detail: state.detail }, 'health condition unhealthy');
    else if (prev) this.log?.info({ condition: name, detail: state.detail }, 'health condition recovered');
  }

  /** Sets a condition's expected initial state (e.g. "starting") without logging it. */
  initCondition(name: string, state: ConditionState): void {
    this.conditions.set(name, { healthy: state.healthy, detail: state.detail, sinceMs: this.now() });
    this.gauge?.set({ condition: name }, state.healthy ? 1 : 0);
  }

  /** Removes a condition (a part that no longer exists, e.g. after a repair). */
  clearCondition(name: string): void {
    this.conditions.delete(name);
    this.gauge?.remove({ condition: name });
  }

  condition(name: string): ConditionReport | undefined {
    return this.conditions.get(name);
  }

  readiness(): Readiness {
    const conditions: Record<string, ConditionReport> = {};
    const reasons: string[] = [];
    for (const [name, c] of this.conditions) {
      conditions[name] = { ...c };
      if (!c.healthy) reasons.push(c.detail ? `${name}: ${c.detail}` : name);
    }
    return { ready: reasons.length === 0, reasons, conditions };
  }
}
