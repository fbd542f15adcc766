import { errorMessage } from '../../errors.ts';
import { collectStatus, openStatusClients, type PipelineStatus, type StatusClients, type StatusTargets } from '../../health/status-collect.ts';
import { metricsUrlOf } from '../../health/status-targets.ts';
import type { Logger } from '../../logger.ts';
import { sleep } from '../../util/sleep.ts';
import type { ClvRecord } from '../clv-record.ts';
import { aggregate, counterRate, parsePromText, type PromSample } from './prom-text.ts';
import { RingBuffer } from './ring-buffer.ts';

/** What the sampler reads besides collectStatus: the CLV table (ClvPostgres fits). */
export interface ClvSource {
  segments(): Promise<Array<{ valueSegment: string; frequencySegment: string; customers: number }>>;
  top(by: 'revenue', limit: number): Promise<ClvRecord[]>;
}

/** One point of the charts. Rates are per second since the previous sample; null where unknown. */
export interface StatusPoint {
  /** Seconds since the epoch (uPlot's x unit). */
  t: number;
  captureEventsPerSec: number | null;
  groups: Record<string, { appliedPerSec: number | null; freshnessSeconds: number | null; lag: number | null }>;
  walRetainedBytes: number | null;
}

export interface ClvSummary {
  segments: Array<{ valueSegment: string; frequencySegment: string; customers: number }>;
  top: ClvRecord[];
  /** Set when the CLV table could not be read (not migrated, Postgres down). */
  error: string | null;
}

export interface StatusView {
  sampledAt: string;
  status: PipelineStatus;
  clv: ClvSummary;
}

export interface SamplerOptions {
  targets: StatusTargets;
  clv: ClvSource;
  intervalMs: number;
  capacity: number;
  log: Logger;
  topLimit?: number;
  /** Called with every CLV summary read (the API's segment gauge). */
  onClv?: (clv: ClvSummary) => void;
}

interface Counters { at: number; capture?: number; applied: Map<string, number> }

/**
 * Samples the pipeline on a timer into a ring buffer, for the status page:
 * collectStatus (what `shopstream status` shows) plus the processes' own
 * /metrics for rates and freshness, and the CLV table. One loop, stopped by
 * its AbortSignal or stop(); a failed part of a sample becomes an error in
 * that sample, never a stopped loop.
 */
export class StatusSampler {
  readonly history: RingBuffer<StatusPoint>;
  private view: StatusView | undefined;
  private prev: Counters | undefined;
  private controller: AbortController | undefined;
  private loop: Promise<void> | undefined;
  /** Held from the first sample to stop(): a sample every few seconds should not open a Kafka admin and two pools each time. */
  private clients: StatusClients | undefined;

  constructor(private readonly o: SamplerOptions) {
    this.history = new RingBuffer(o.capacity);
  }

  get latest(): StatusView | undefined {
    return this.view;
  }

  start(signal: AbortSignal): void {
    if (this.loop) return;
    const controller = new AbortController();
    this.controller = controller;
    signal.addEventListener('abort', () => controller.abort(), { once: true });
    this.loop = this.run(controller.signal);
  }

  async stop(): Promise<void> {
    this.controller?.abort();
    await this.loop;
    const clients = this.clients;
    this.clients = undefined;
    await clients?.close();
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const began = Date.now();
      try {
        await this.sampleOnce();
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err) }, 'status sample failed');
      }
      await sleep(Math.max(0, this.o.intervalMs - (Date.now() - began)), signal);
    }
  }

  /** Takes one sample now (the loop's step; tests call it directly). */
  async sampleOnce(): Promise<StatusView> {
    const { targets } = this.o;
    this.clients ??= openStatusClients(targets);
    const [status, metrics, clv] = await Promise.all([collectStatus(targets, this.clients), this.scrape(), this.readClv()]);
    const now = Date.now();
    const capture = aggregate(metrics, 'capture_events_total', 'sum').get('');
    const applied = aggregate(metrics, 'consumer_messages_applied_total', 'sum', 'group');
    // The newest applied change of any topic: a topic nobody writes to (products) would otherwise read as ever staler.
    const fresh = aggregate(metrics, 'consumer_freshness_seconds', 'min', 'group');
    const dt = this.prev ? (now - this.prev.at) / 1000 : 0;
    const groups: StatusPoint['groups'] = {};
    for (const g of status.groups) {
      groups[g.group] = {
        appliedPerSec: counterRate(this.prev?.applied.get(g.group), applied.get(g.group), dt),
        freshnessSeconds: fresh.get(g.group) ?? null,
        lag: g.lag === null ? null : Number(g.lag),
      };
    }
    this.history.push({
      t: now / 1000,
      captureEventsPerSec: counterRate(this.prev?.capture, capture, dt),
      groups,
      walRetainedBytes: status.slot.retainedBytes === null ? null : Number(status.slot.retainedBytes),
    });
    this.prev = { at: now, capture, applied };
    this.view = { sampledAt: new Date(now).toISOString(), status, clv };
    this.o.onClv?.(clv);
    return this.view;
  }

  /** Every process's /metrics; one that does not answer adds nothing (its health row says why). */
  private async scrape(): Promise<PromSample[]> {
    const { targets } = this.o;
    const texts = await Promise.all(targets.processes.map(async (p) => {
      try {
        const res = await fetch(metricsUrlOf(p), { headers: p.headers, signal: AbortSignal.timeout(targets.timeoutMs) });
        return res.ok ? await res.text() : '';
      } catch {
        return '';
      }
    }));
    return texts.flatMap(parsePromText);
  }

  private async readClv(): Promise<ClvSummary> {
    try {
      const [segments, top] = await Promise.all([this.o.clv.segments(), this.o.clv.top('revenue', this.o.topLimit ?? 10)]);
      return { segments, top, error: null };
    } catch (err) {
      return { segments: [], top: [], error: errorMessage(err) };
    }
  }
}
