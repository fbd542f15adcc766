import { bool, int, type Env } from '../../config/env.ts';
import type { StatusTargets } from '../../health/status-collect.ts';
import { DEFAULT_PID_DIR, PROCESS_NAMES, statusTargets } from '../../health/status-targets.ts';

export interface StatusPageConfig {
  /** How often the API samples the pipeline for the page (STATUS_SAMPLE_MS). */
  sampleMs: number;
  /** Samples kept for the charts (STATUS_HISTORY_SAMPLES): 120 × 5 s = the last 10 minutes. */
  historySize: number;
  /** What is sampled: the same targets `shopstream status` checks, from the same settings. */
  targets: StatusTargets;
}

/** The status page's settings; undefined when STATUS_PAGE=false. */
export function loadStatusPageConfig(env: Env = process.env): StatusPageConfig | undefined {
  if (!bool(env, 'STATUS_PAGE', true)) return undefined;
  const timeoutMs = int(env, 'STATUS_TIMEOUT_MS', 2_000, { min: 1 });
  return {
    sampleMs: int(env, 'STATUS_SAMPLE_MS', 5_000, { min: 100 }),
    historySize: int(env, 'STATUS_HISTORY_SAMPLES', 120, { min: 2, max: 100_000 }),
    targets: statusTargets(env, { pidDir: env.STATUS_PID_DIR?.trim() || DEFAULT_PID_DIR, processes: PROCESS_NAMES, timeoutMs }),
  };
}
