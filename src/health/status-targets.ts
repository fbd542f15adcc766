import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadClickstreamConfig } from '../../consumers/clickstream/config.ts';
import { loadApiConfig } from '../api/config.ts';
import { loadWarehouseConsumerConfig } from '../../consumers/warehouse/config.ts';
import { url, type Env } from '../config/env.ts';
import { loadCaptureConfig } from '../source/capture-config.ts';
import { HEALTH_PORTS, loadHealthListen } from './config.ts';
import { pidFileIn, type ProcessTarget, type StatusTargets } from './status-collect.ts';

/** The processes `status` and the status page check, in display order. */
export const PROCESS_NAMES = ['capture', 'consumers', 'clickstream', 'api', 'registry'] as const;
export type ProcessName = (typeof PROCESS_NAMES)[number];

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** `.stack/app`, where the demo writes its pidfiles. */
export const DEFAULT_PID_DIR = path.join(REPO, '.stack/app');

/** `STATUS_CAPTURE_URL`, `STATUS_CONSUMERS_URL`… : where another host reaches a process (docker-compose: http://capture:58091). */
export const statusUrlSetting = (name: ProcessName) => `STATUS_${name.toUpperCase()}_URL`;

export interface StatusTargetOptions {
  pidDir: string;
  processes: readonly ProcessName[];
  walWarnBytes?: bigint;
  timeoutMs: number;
  /** Base URLs known better than the settings say (the API's own bound URL when it listens on port 0). */
  baseUrls?: Partial<Record<ProcessName, string>>;
}

const hostOf = (h: string) => (h === '0.0.0.0' ? '127.0.0.1' : h === '::' ? '[::1]' : h.includes(':') ? `[${h}]` : h);
const trimSlash = (u: string) => u.replace(/\/+$/, '');

/**
 * The targets `status` checks, from the processes' own settings: each
 * process's listen address (a wildcard read as loopback), unless
 * STATUS_<NAME>_URL names where it is reached from here.
 */
export function statusTargets(env: Env, o: StatusTargetOptions): StatusTargets {
  const capture = loadCaptureConfig(env);
  const wh = loadWarehouseConsumerConfig(env);
  const click = loadClickstreamConfig(env);
  const api = loadApiConfig(env);
  const consumerListen = loadHealthListen(env, 'CONSUMER_HEALTH_HOST', 'CONSUMER_HEALTH_PORT', HEALTH_PORTS.warehouse);
  const clickListen = loadHealthListen(env, 'CLICKSTREAM_HEALTH_HOST', 'CLICKSTREAM_HEALTH_PORT', HEALTH_PORTS.clickstream);
  const fromSettings: Record<ProcessName, string> = {
    capture: `http://${hostOf(capture.metricsHost)}:${capture.metricsPort}`,
    consumers: `http://${hostOf(consumerListen.host)}:${consumerListen.port}`,
    clickstream: `http://${hostOf(clickListen.host)}:${clickListen.port}`,
    api: `http://${hostOf(api.host)}:${api.port}`,
    registry: capture.registryUrl,
  };
  const disabled: Partial<Record<ProcessName, string>> = {
    ...(capture.metricsPort === -1 ? { capture: 'CAPTURE_METRICS_PORT' } : {}),
    ...(consumerListen.port === -1 ? { consumers: consumerListen.portSetting } : {}),
    ...(clickListen.port === -1 ? { clickstream: clickListen.portSetting } : {}),
  };
  const base = (n: ProcessName) => trimSlash(o.baseUrls?.[n] ?? (env[statusUrlSetting(n)]?.trim() ? url(env, statusUrlSetting(n), undefined, ['http:', 'https:']) : fromSettings[n]));
  const target = (n: ProcessName): ProcessTarget => ({
    name: n,
    pidFile: n === 'registry' ? path.join(REPO, '.stack/registry/registry.pid') : pidFileIn(o.pidDir, n),
    readyUrl: `${base(n)}/readyz`,
    headers: n === 'api' && api.authToken ? { authorization: `Bearer ${api.authToken}` } : undefined,
    disabledBy: o.baseUrls?.[n] || env[statusUrlSetting(n)]?.trim() ? undefined : disabled[n],
    ca: n === 'registry' ? capture.registry.ca : undefined,
  });
  return {
    processes: o.processes.map(target),
    groups: [{ group: wh.group, topics: wh.topics }, { group: click.group, topics: [click.topic] }],
    sourceUrl: capture.sourceUrl, warehouseUrl: wh.stack.warehouseUrl, kafkaBrokers: capture.kafkaBrokers, kafka: capture.kafka, topicPrefix: capture.topicPrefix,
    schemas: wh.schemas, slot: capture.slot, walWarnBytes: o.walWarnBytes ?? BigInt(capture.walWarnBytes), redisKeyPrefix: wh.redisKeyPrefix, timeoutMs: o.timeoutMs,
  };
}

/** /metrics beside a target's /readyz. */
export const metricsUrlOf = (t: ProcessTarget) => t.readyUrl.replace(/\/readyz$/, '/metrics');
