import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.ts';

/**
 * Every `shopstream` subcommand answers --help (exit 0, its own usage line),
 * spawned through the package's bin as a user would run it; a usage error
 * exits 2 with the reason.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const cli = (args: string[]) => runCli(args, { ...process.env, LOG_LEVEL: 'warn' }, ROOT);

/** Runs `jobs` at most `n` at a time: each spawn loads tsx and the whole pipeline. */
async function limited<T>(jobs: Array<() => Promise<T>>, n: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  }));
  return out;
}

const SUBCOMMANDS: Array<[string[], RegExp]> = [
  [['capture'], /Run the capture/],
  [['snapshot'], /<table>[\s\S]*--wait[\s\S]*--timeout <seconds>/],
  [['consume'], /choices: "warehouse", "clickstream"/],
  [['api'], /CLV lookup API/],
  [['registry'], /schema registry/],
  [['migrate'], /--source-schema <schema>[\s\S]*--staging <schema>/],
  [['status'], /--json[\s\S]*--strict[\s\S]*--wal-warn-bytes <n>/],
  [['replay'], /--from-offset <earliest\|N>[\s\S]*--from-timestamp <T>/],
  [['verify'], /--json[\s\S]*--source[\s\S]*--samples <n>/],
  [['verify', 'clickstream'], /--rebuild/],
  [['redis'], /rebuild/],
  [['redis', 'rebuild'], /--page-size <n>/],
  [['generate'], /--source-schema <name>[\s\S]*--customers <n>[\s\S]*clickstream/],
  [['generate', 'clickstream'], /--visitors <n>[\s\S]*--from-source/],
  [['demo'], /choices: "stop"/],
  [['stack'], /up[\s\S]*down[\s\S]*status/],
  [['stack', 'up'], /start every server/],
  [['stack', 'down'], /stop every server/],
  [['stack', 'status'], /which servers run/],
];

describe('shopstream CLI', () => {
  it('lists every subcommand in --help', async () => {
    const r = await cli(['--help']);
    expect(r.code, r.stderr).toBe(0);
    const listed = [...r.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]);
    expect(listed).toEqual(['capture', 'snapshot', 'consume', 'api', 'registry', 'migrate', 'status', 'replay', 'verify', 'redis', 'generate', 'demo', 'stack', 'help']);
  }, 60_000);

  it('answers --help for every subcommand, with its own usage', async () => {
    const runs = await limited(SUBCOMMANDS.map(([path]) => () => cli([...path, '--help'])), 4);
    SUBCOMMANDS.forEach(([path, expected], i) => {
      const r = runs[i]!;
      expect(r.code, `${path.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain(`Usage: shopstream ${path.join(' ')} `);
      expect(r.stdout).toMatch(expected);
    });
  }, 180_000);

  it('exits 2 with the reason on a usage error', async () => {
    const [badGroup, badSet, noFrom] = await limited([
      () => cli(['consume', 'orders']),
      () => cli(['migrate', 'everything']),
      () => cli(['replay']),
    ], 3);
    expect(badGroup).toMatchObject({ code: 2 });
    expect(badGroup!.stderr).toMatch(/Allowed choices are warehouse, clickstream/);
    expect(badSet).toMatchObject({ code: 2 });
    expect(badSet!.stderr).toMatch(/Allowed choices are source, warehouse, all/);
    expect(noFrom).toMatchObject({ code: 2 });
    expect(noFrom!.stderr).toMatch(/one of --rewind, --from-offset or --from-timestamp is required/);
  }, 60_000);
});
