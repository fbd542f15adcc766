import type { Logger } from '../logger.ts';

/**
 * Progress of a long job (replay, rebuild) as a bar redrawn in place on a
 * terminal, or as structured log lines elsewhere (CI, containers, files),
 * where carriage returns only make noise. Rate is measured over a sliding
 * window so the ETA follows the current speed, not the average since a slow
 * start (group join, cold caches).
 */
export interface ProgressSink {
  isTTY?: boolean;
  write(chunk: string): unknown;
}

export interface ProgressOptions {
  label: string;
  /** What the count counts, for the text ("messages"). */
  unit?: string;
  total: number;
  /** Where the bar goes on a terminal (default process.stderr). */
  stream?: ProgressSink;
  /** Where log lines go when the stream is not a terminal. */
  log: Logger;
  /** Minimum time between two log lines (default 2 s) or two redraws (fixed 100 ms). */
  logIntervalMs?: number;
  /** Width of the bar in characters. */
  width?: number;
  /** Clock, injectable so tests do not sleep. */
  now?: () => number;
  /** Force the mode instead of asking the stream. */
  tty?: boolean;
}

export interface ProgressState {
  done: number;
  total: number;
  /** Units per second over the recent window; 0 before two samples. */
  rate: number;
  /** Seconds left at the current rate; null when unknown (no rate yet). */
  etaSeconds: number | null;
  elapsedSeconds: number;
}

const WINDOW_MS = 10_000;
const REDRAW_MS = 100;

/** 75 -> "1:15", 3725 -> "1:02:05", null -> "?". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** "[#####.....]" for done/total; a full bar when total is 0 (nothing to do is done). */
export function renderBar(done: number, total: number, width: number): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const full = Math.floor(frac * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export class Progress {
  private readonly now: () => number;
  private readonly started: number;
  private readonly samples: Array<[number, number]> = [];
  private readonly tty: boolean;
  private readonly stream: ProgressSink;
  private total: number;
  private done = 0;
  private lastEmit = -Infinity;
  private finished = false;

  constructor(private readonly o: ProgressOptions) {
    this.now = o.now ?? Date.now;
    this.started = this.now();
    this.stream = o.stream ?? process.stderr;
    this.tty = o.tty ?? this.stream.isTTY === true;
    this.total = o.total;
    this.samples.push([this.started, 0]);
  }

  /** Sets the absolute count (not an increment: callers read it from offsets, which can be re-read safely). */
  update(done: number, total?: number): void {
    if (this.finished) return;
    if (total !== undefined) this.total = total;
    this.done = done;
    const t = this.now();
    this.samples.push([t, done]);
    while (this.samples.length > 2 && this.samples[0]![0] < t - WINDOW_MS) this.samples.shift();
    const interval = this.tty ? REDRAW_MS : (this.o.logIntervalMs ?? 2000);
    if (t - this.lastEmit >= interval) this.emit(t, false);
  }

  state(t = this.now()): ProgressState {
    const [t0, d0] = this.samples[0]!;
    const rate = t > t0 ? ((this.done - d0) * 1000) / (t - t0) : 0;
    const left = Math.max(0, this.total - this.done);
    return {
      done: this.done,
      total: this.total,
      rate,
      etaSeconds: left === 0 ? 0 : rate > 0 ? left / rate : null,
      elapsedSeconds: (t - this.started) / 1000,
    };
  }

  /** The final line; the bar's line is closed so later output starts on a fresh one. */
  finish(message = 'done'): void {
    if (this.finished) return;
    this.emit(this.now(), true, message);
    this.finished = true;
  }

  private text(s: ProgressState): string {
    const pct = s.total > 0 ? Math.min(100, Math.floor((s.done / s.total) * 100)) : 100;
    const unit = this.o.unit ?? 'items';
    return `${this.o.label} ${renderBar(s.done, s.total, this.o.width ?? 30)} ${pct}% ${s.done}/${s.total} ${unit} ` +
      `${Math.round(s.rate)}/s ETA ${formatDuration(s.etaSeconds)} elapsed ${formatDuration(s.elapsedSeconds)}`;
  }

  private emit(t: number, final: boolean, message?: string): void {
    this.lastEmit = t;
    const s = this.state(t);
    if (this.tty) {
      this.stream.write(`\r${this.text(s)}\x1b[K${final ? `\n${this.o.label}: ${message}\n` : ''}`);
      return;
    }
    const fields = {
      label: this.o.label, done: s.done, total: s.total, rate: Math.round(s.rate),
      etaSeconds: s.etaSeconds === null ? null : Math.round(s.etaSeconds), elapsedSeconds: Math.round(s.elapsedSeconds),
    };
    this.o.log.info(fields, final ? `${this.o.label}: ${message}` : `${this.o.label}: ${s.done}/${s.total} ${this.o.unit ?? 'items'}`);
  }
}
