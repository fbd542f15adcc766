/**
 * Just enough of the Prometheus text format to read our own processes'
 * counters and gauges back: `name{label="v",…} value [timestamp]` lines,
 * comments skipped. Label values are unescaped (\\, \", \n).
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g;

export function parsePromText(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** Sum (or min, max) of the samples named `name`, per value of `by` (one entry '' without `by`); absent names give an empty map. */
export function aggregate(samples: readonly PromSample[], name: string, how: 'sum' | 'min' | 'max', by?: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name || Number.isNaN(s.value)) continue;
    const k = by === undefined ? '' : (s.labels[by] ?? '');
    const prev = out.get(k);
    out.set(k, prev === undefined ? s.value : how === 'sum' ? prev + s.value : how === 'min' ? Math.min(prev, s.value) : Math.max(prev, s.value));
  }
  return out;
}

/** Per-second rate between two readings of a counter; null across a reset (the process restarted) or without time between. */
export function counterRate(prev: number | undefined, cur: number | undefined, seconds: number): number | null {
  if (prev === undefined || cur === undefined || seconds <= 0 || cur < prev) return null;
  return (cur - prev) / seconds;
}
