import { int, listenHost, type Env } from '../config/env.ts';
import { ConfigError } from '../errors.ts';
import type { WatchdogLimits } from './watchdog.ts';

/**
 * Default health/metrics ports of the pipeline processes, next to the stack's
 * 580xx ports (README "Ports"). The API (58080) and the registry (58081)
 * serve /healthz, /readyz and /metrics on their own HTTP port.
 */
export const HEALTH_PORTS = {
  capture: 58091,
  warehouse: 58092,
  clickstream: 58093,
} as const;

export interface HealthListenConfig {
  host: string;
  /** 0 picks a free port; -1 disables the listener. */
  port: number;
  /** The variable the port came from, for error messages. */
  portSetting: string;
}

/** `<PREFIX>_HEALTH_HOST` / `<PREFIX>_HEALTH_PORT` (e.g. CONSUMER_HEALTH_PORT). */
export function loadHealthListen(env: Env, hostVar: string, portVar: string, defaultPort: number): HealthListenConfig {
  return { host: listenHost(env, hostVar), port: int(env, portVar, defaultPort, { min: -1, max: 65535 }), portSetting: portVar };
}

export interface WatchdogConfig extends WatchdogLimits {
  /** How often the process samples its work and progress (and refreshes lag, DLQ and outbox gauges). */
  intervalMs: number;
}

/** WATCHDOG_UNHEALTHY_MS (60 s), WATCHDOG_EXIT_MS (300 s, 0 = never exit), WATCHDOG_INTERVAL_MS (5 s). */
export function loadWatchdogConfig(env: Env): WatchdogConfig {
  const unhealthyMs = int(env, 'WATCHDOG_UNHEALTHY_MS', 60_000, { min: 100 });
  const exitMs = int(env, 'WATCHDOG_EXIT_MS', 300_000, { min: 0 });
  if (exitMs > 0 && exitMs < unhealthyMs) throw new ConfigError(`WATCHDOG_EXIT_MS must be 0 or at least WATCHDOG_UNHEALTHY_MS (${unhealthyMs}), got ${exitMs}`);
  const intervalMs = int(env, 'WATCHDOG_INTERVAL_MS', Math.min(5_000, Math.max(50, Math.floor(unhealthyMs / 4))), { min: 10 });
  return { unhealthyMs, exitMs, intervalMs };
}
