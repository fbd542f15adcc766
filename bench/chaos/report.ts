import type { ChaosReport } from './chaos.ts';

/** The Markdown twin of a chaos report's JSON: the faults table, the summary per kind and the final comparison. */
export function reportMarkdown(r: ChaosReport): string {
  const s = (ms: number | null | undefined) => (ms === null || ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`);
  const out: string[] = [];
  out.push(`# Chaos run, seed ${r.seed}`, '');
  out.push(`${r.ok ? 'PASSED' : 'FAILED'}: ${r.faults.length} faults in ${r.minutes} min (run ${r.durationS} s in all, started ${r.startedAt}),`);
  out.push(`on a throw-away stack with ${r.stack.kafkaBrokers} Kafka broker(s) and ${r.stack.redis === 'single' ? 'a single Redis' : `a ${r.stack.redis}`}, capture producer ${r.stack.captureProducer ?? 'kafkajs'}; stall bound ${s(r.stallBoundMs)}.`);
  if (r.lanes) {
    const over = r.faults.filter((f) => (f.overlapping ?? 0) > 0).length;
    out.push(`Faults in concurrent lanes, one per kind and per member for the member kinds (--lanes): ${over} of ${r.faults.length} were injected while a fault of another lane was under way (at most ${Math.max(0, ...r.faults.map((f) => f.overlapping ?? 0))} at once). Stack settings for fast restarts: ${Object.entries(r.stackTuning ?? {}).map(([k, v]) => `${k}='${v}'`).join(', ') || 'none'}.`);
  }
  out.push(`Load average ${r.machine.loadavgStart.map((x) => x.toFixed(1)).join('/')} at the start, ${r.machine.loadavgEnd.map((x) => x.toFixed(1)).join('/')} at the end (2 cores, shared).`, '');
  if (r.error) out.push('Error:', '', '```', r.error, '```', '');
  if (r.stack.keptState) out.push(`The stack's state is kept in ${r.stack.keptState} (servers stopped): \`STACK_STATE=${r.stack.keptState} bash scripts/stack.sh up postgres\` with the run's ports brings its rows back.`, '');
  out.push('## Recovery by kind', '', '| kind | faults | recovered | p50 | max |', '|---|---:|---:|---:|---:|');
  for (const k of r.summary.byKind) out.push(`| ${k.kind} | ${k.faults} | ${k.recovered} | ${s(k.p50Ms)} | ${s(k.maxMs)} |`);
  const a = r.summary.all;
  out.push(`| **all** | ${a.faults} | ${a.recovered} | ${s(a.p50Ms)} | ${s(a.maxMs)} |`, '');
  out.push('Recovery: from the fault (for a zombie member, from its SIGCONT) until every process made progress again (each check passed at least once after the fault): the capture confirmed the WAL position of the fault, every consumer member applied messages, both groups were stable with every running member in them and stored offsets at the high watermarks of the fault, every Redis outbox row of the fault was written to Redis, the API answered a CLV lookup, the registry its subject list.', '');
  if (r.final) {
    const f = r.final;
    out.push('## Final comparison', '', `Caught up ${s(f.caughtUpMs)} after the load stopped. Rows compared: ${f.rowsCompared}.`, '');
    out.push('| table | rows | missing | excess |', '|---|---:|---:|---:|');
    for (const t of f.tables) out.push(`| ${t.table} | ${t.rows} | ${t.missing} | ${t.excess}${t.differing ? ` (+${t.differing} differing)` : ''} |`);
    out.push(`| Redis clv:* vs customer_lifetime_value | ${f.redis.keys} | ${f.redis.missing} | ${f.redis.extra}${f.redis.stale ? ` (+${f.redis.stale} stale)` : ''} |`, '');
    out.push(`Data checks failed: ${f.checksFailed.length === 0 ? 'none' : f.checksFailed.join('; ')}.`, '');
    for (const t of f.tables.filter((x) => x.keys)) {
      const k = t.keys!;
      out.push(`- ${t.table}: missing at key ${k.missing.join('; ') || '-'}; excess at key ${k.excess.join('; ') || '-'}${k.differing ? `; differing at key ${k.differing.join('; ')}` : ''}`);
    }
    if (f.tables.some((x) => x.keys)) out.push('');
  }
  out.push('## Slot never past Kafka', '', `${r.slot.samples} samples of confirmed_flush_lsn during the run, each followed by the orders topic's high watermarks: ${r.slot.violations} order(s) committed before a sampled slot position were not in Kafka at that moment.`, '');
  for (const v of r.slot.firstViolations) out.push(`- order ${v.orderId}: ${v.why}`);
  out.push('## Load', '', Object.entries(r.load).map(([k, v]) => `${k} ${v}`).join(', '), '');
  out.push('## Processes', '', '| process | starts | exits not caused by the suite |', '|---|---:|---|');
  for (const p of r.processes) out.push(`| ${p.name} | ${p.starts} | ${p.unexpectedExits.length === 0 ? 'none' : p.unexpectedExits.map((e) => e.signal ?? `code ${e.code}`).join(', ')} |`);
  out.push('', '## Faults', '', `| # | at | kind | target |${r.lanes ? ' others under way |' : ''} recovery | last to recover | detail |`, `|---:|---:|---|---|${r.lanes ? '---:|' : ''}---:|---|---|`);
  for (const f of r.faults) out.push(`| ${f.n} | ${f.atS} s | ${f.kind} | ${f.target} |${r.lanes ? ` ${f.overlapping ?? 0} |` : ''} ${f.recoveryMs === null ? `STALLED: ${(f.stalled ?? []).join(', ')}` : s(f.recoveryMs)} | ${(f.slowest ?? []).join(', ')} | ${f.detail ?? ''} |`);
  return `${out.join('\n')}\n`;
}
