import cliProgress from 'cli-progress';

/**
 * Progress of a long CLI job (snapshot --wait, replay, verify, redis
 * rebuild) on stderr: on a terminal a cli-progress bar redrawn in place,
 * with rate and ETA; anywhere else (CI, pipes, files, tests) a plain line
 * every `intervalMs`, since carriage returns only make noise there. The
 * rate is measured over a sliding window, so the ETA follows the current
 * speed rather than the average since a slow start (group join, cold caches).
 */
export interface ProgressSink {
  isTTY?: boolean;
  write(chunk: string): unknown;
}

export interface ProgressOptions {
  label: string;
  /** What the count counts ("rows", "messages"). */
  unit: string;
  /** Total when known; null shows count and rate only. */
  total: number | null;
  /** Default process.stderr. */
  stream?: ProgressSink;
  /** Force the mode instead of asking the stream. */
  tty?: boolean;
  /** Minimum time between two plain lines (default 2 s). */
  intervalMs?: number;
  /** Clock, injectable so tests do not sleep. */
  now?: () => number;
}

export interface ProgressState {
  done: number;
  total: number | null;
  /** Units per second over the recent window; 0 before two samples. */
  rate: number;
  /** Seconds left at the current rate; null when unknown. */
  etaSeconds: number | null;
  elapsedSeconds: number;
}

const WINDOW_MS = 10_000;

/** 75 -> "1:15", 3725 -> "1:02:05", null -> "?". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The plain line: `replay: 120/500 messages (24%), 60/s, ETA 0:07, elapsed 0:02`. */
export function formatLine(label: string, unit: string, s: ProgressState): string {
  const count = s.total === null ? `${s.done} ${unit}` : `${s.done}/${s.total} ${unit} (${s.total > 0 ? Math.min(100, Math.floor((s.done / s.total) * 100)) : 100}%)`;
  const eta = s.total === null ? '' : `, ETA ${formatDuration(s.etaSeconds)}`;
  return `${label}: ${count}, ${Math.round(s.rate)}/s${eta}, elapsed ${formatDuration(s.elapsedSeconds)}`;
}

export class CliProgress {
  private readonly now: () => number;
  private readonly started: number;
  private readonly samples: Array<[number, number]> = [];
  private readonly stream: ProgressSink;
  private readonly bar: cliProgress.SingleBar | undefined;
  private total: number | null;
  private done = 0;
  private lastLine = -Infinity;
  private finished = false;

  constructor(private readonly o: ProgressOptions) {
    this.now = o.now ?? Date.now;
    this.started = this.now();
    this.samples.push([this.started, 0]);
    this.stream = o.stream ?? process.stderr;
    this.total = o.total;
    if (o.tty ?? this.stream.isTTY === true) {
      this.bar = new cliProgress.SingleBar({
        format: o.total === null ? '{label} {value} {unit} {rate}/s elapsed {elapsed}' : '{label} [{bar}] {percentage}% {value}/{total} {unit} {rate}/s ETA {left} elapsed {elapsed}',
        stream: this.stream as NodeJS.WritableStream, hideCursor: true, barsize: 30, fps: 10, clearOnComplete: false,
      }, cliProgress.Presets.legacy);
      this.bar.start(o.total ?? 0, 0, this.payload());
    }
  }

  /** Sets the absolute count (callers read it from offsets or tables, which can be re-read safely). */
  update(done: number, total?: number | null): void {
    if (this.finished) return;
    if (total !== undefined) this.total = total;
    this.done = done;
    const t = this.now();
    this.samples.push([t, done]);
    while (this.samples.length > 2 && this.samples[0]![0] < t - WINDOW_MS) this.samples.shift();
    if (this.bar) {
      if (this.total !== null) this.bar.setTotal(this.total);
      this.bar.update(done, this.payload());
    } else if (t - this.lastLine >= (this.o.intervalMs ?? 2_000)) {
      this.lastLine = t;
      this.stream.write(`${formatLine(this.o.label, this.o.unit, this.state(t))}\n`);
    }
  }

  state(t = this.now()): ProgressState {
    const [t0, d0] = this.samples[0]!;
    const rate = t > t0 ? ((this.done - d0) * 1000) / (t - t0) : 0;
    const left = this.total === null ? null : Math.max(0, this.total - this.done);
    return {
      done: this.done, total: this.total, rate,
      etaSeconds: left === null ? null : left === 0 ? 0 : rate > 0 ? left / rate : null,
      elapsedSeconds: (t - this.started) / 1000,
    };
  }

  /** The final line (`<label>: <message>: …`); safe twice. */
  finish(message = 'done'): void {
    if (this.finished) return;
    this.finished = true;
    const s = this.state();
    if (this.bar) {
      this.bar.update(this.done, this.payload());
      this.bar.stop();
    }
    const count = s.total === null ? `${s.done} ${this.o.unit}` : `${s.done}/${s.total} ${this.o.unit}`;
    const avg = s.elapsedSeconds > 0 ? Math.round(s.done / s.elapsedSeconds) : 0;
    this.stream.write(`${this.o.label}: ${message}: ${count} in ${formatDuration(s.elapsedSeconds)} (${avg}/s)\n`);
  }

  // Not `eta`: that is cli-progress's own token (whole seconds over its own buffer).
  private payload(): Record<string, string> {
    const s = this.state();
    return { label: this.o.label, unit: this.o.unit, rate: String(Math.round(s.rate)), left: formatDuration(s.etaSeconds), elapsed: formatDuration(s.elapsedSeconds) };
  }
}
