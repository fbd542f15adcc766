import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Argument, Command, CommanderError, InvalidArgumentError } from 'commander';
import { runClickstreamConsumer } from '../../consumers/clickstream/main.ts';
import { runClickstreamVerify } from '../../consumers/clickstream/verify.ts';
import { runWarehouseConsumer } from '../../consumers/warehouse/main.ts';
import { runApi } from '../api/main.ts';
import { generateClickstreamCommand, runGenerateClickstream, type ClickstreamGenerateOptions } from '../generator/clickstream-cli.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import type { SchemaNames } from '../migrations/runner.ts';
import { runRegistry } from '../registry/main.ts';
import { loadCaptureConfig } from '../source/capture-config.ts';
import { RESNAPSHOT_TABLE, requestResnapshot, runCapture } from './capture.ts';
import { generateCommand, runGenerate, type GenerateOptions } from './generate.ts';
import { followResnapshot } from './snapshot-follow.ts';
import { MIGRATION_TARGETS, runMigrate } from './migrate.ts';
import { redisRebuildCommand, runRedisRebuild } from './redis-rebuild.ts';
import { replayCommand, runReplay, type ReplayCliOptions } from './replay.ts';
import { runStatus } from './status.ts';
import { runVerifyCli, VERIFY_COULD_NOT_RUN, verifyCommand, type VerifyCliOptions } from './verify.ts';

/**
 * `shopstream`: one entry point for every process and tool of the pipeline
 * (docs/cli.md). Each subcommand calls the exported run function of its
 * entry file (src/cli/*.ts, consumers/<group>/main.ts, src/api/main.ts,
 * src/registry/main.ts), which still runs on its own too. Settings come
 * from the environment as documented per component; flags override the
 * few a command takes. Exit codes: 0 done, 1 failed (verify: differences
 * found), 2 bad configuration or usage.
 *
 * Adding a command is one line in `buildProgram`: `.addCommand(fooCommand())`
 * for a command defined beside its code, or
 * `.addCommand(action(new Command('foo').description(...), (opts) => runFoo(opts)))`.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function ident(v: string): string {
  if (!IDENT.test(v)) throw new InvalidArgumentError('must be a lowercase identifier ([a-z_][a-z0-9_]*)');
  return v;
}

/**
 * Sets `run` as the command's action with the CLI's error handling: a
 * ConfigError exits 2 with one line, any other error 1; a number returned
 * becomes the exit code. Long-running processes resolve once started and
 * keep running until SIGINT/SIGTERM (src/lifecycle/run-main.ts).
 */
export function action<O extends object>(cmd: Command, run: (opts: O, cmd: Command) => Promise<unknown>): Command {
  return cmd.action(async (...args: unknown[]) => {
    const self = args[args.length - 1] as Command;
    try {
      const code = await run(self.opts<O>(), self);
      if (typeof code === 'number') process.exitCode = code;
    } catch (err) {
      if (err instanceof CommanderError) throw err; // a usage error the command raised itself: runCli exits 2
      const path: string[] = [];
      for (let c: Command | null = self; c; c = c.parent) path.unshift(c.name());
      exitOnStartupError(path.join(' '), err);
    }
  });
}

/** Runs one of the repository's shell scripts (stack, demo), which need a source checkout. */
function script(name: string, args: string[]): Promise<number> {
  const path = join(ROOT, 'scripts', name);
  if (!existsSync(path)) throw new Error(`${name} is not part of this installation; run it from a source checkout of shopstream-cdc`);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path, ...args], { stdio: 'inherit', cwd: ROOT });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

function seconds(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a whole number of seconds');
  return Number(v);
}

function snapshotTable(table: string): string {
  if (RESNAPSHOT_TABLE.test(table)) return table;
  if (!IDENT.test(table)) throw new InvalidArgumentError('must be a table name or schema.table');
  const schemas = loadCaptureConfig().schemas;
  if (schemas.length !== 1) throw new InvalidArgumentError(`the capture reads several schemas (${schemas.join(', ')}): name the table as schema.table`);
  return `${schemas[0]}.${table}`;
}

interface MigrateOptions {
  sourceSchema?: string;
  publication?: string;
  staging?: string;
  analytics?: string;
  meta?: string;
}

function migrateCommand(): Command {
  const cmd = new Command('migrate')
    .description('Apply pending migrations to the source and/or warehouse database')
    .addArgument(new Argument('[set]', 'which migrations').choices(MIGRATION_TARGETS).default('all'))
    .option('--source-schema <schema>', 'source schema to build (default public)', ident)
    .option('--publication <name>', 'publication of the source tables (default shop_cdc)', ident)
    .option('--staging <schema>', 'staging schema to build (default staging)', ident)
    .option('--analytics <schema>', 'analytics schema to build (default analytics)', ident)
    .option('--meta <schema>', 'schema of the migration ledger and consumer metadata (default cdc_meta)', ident);
  return action<MigrateOptions>(cmd, (o, self) => {
    const schemas: Partial<SchemaNames> = {};
    if (o.sourceSchema) schemas.source_schema = o.sourceSchema;
    if (o.publication) schemas.publication = o.publication;
    if (o.staging) schemas.staging_schema = o.staging;
    if (o.analytics) schemas.analytics_schema = o.analytics;
    if (o.meta) schemas.meta_schema = o.meta;
    return runMigrate(self.processedArgs[0] as string, { schemas });
  });
}

function generate(): Command {
  const cmd = action<GenerateOptions>(generateCommand(), (o) => runGenerate(o));
  cmd.addCommand(action<ClickstreamGenerateOptions>(generateClickstreamCommand('clickstream'), (o) => runGenerateClickstream(o)));
  return cmd;
}

function stack(): Command {
  const cmd = new Command('stack').description('The local stack of real servers (Postgres, Redis, Kafka, registry) under .stack/ (docs/stack.md)');
  const sub = (name: string, description: string, withService = false) => {
    const c = new Command(name).description(description);
    if (withService) c.argument('[service]', 'postgres, redis, kafka or registry (default: all)');
    return action(c, (_o, self) => script('stack.sh', [name, ...(self.args as string[])]));
  };
  return cmd
    .addCommand(sub('up', 'install what is missing and start every server (idempotent)'))
    .addCommand(sub('down', 'stop every server'))
    .addCommand(sub('status', 'show which servers run and answer'))
    .addCommand(sub('restart', 'restart the servers', true))
    .addCommand(sub('logs', 'show the servers\' logs', true));
}

export function buildProgram(): Command {
  const program = new Command('shopstream')
    .description('Postgres CDC (pgoutput) -> Kafka (Avro, Debezium envelope) -> e-commerce star schema and CLV in Postgres and Redis')
    .showHelpAfterError()
    .enablePositionalOptions();
  return program
    .addCommand(action(new Command('capture').description('Run the capture: replication slot -> Kafka (docs/capture.md)'), () => runCapture()))
    .addCommand(action<{ wait?: boolean; timeout: number }>(
      new Command('snapshot').description('Ask the running capture to re-snapshot one table, ordered with the changes around it (docs/capture.md)')
        .argument('<table>', 'table, or schema.table when the capture reads several schemas', snapshotTable)
        .option('--wait', 'follow the re-snapshot until its last chunk is in Kafka: a bar with rate and ETA on a terminal, plain lines otherwise')
        .option('--timeout <seconds>', 'with --wait: give up (exit 1) after this long; 0 waits as long as it takes', seconds, 0),
      async (o, self) => {
        const table = self.processedArgs[0] as string;
        const lsn = await requestResnapshot(table);
        process.stdout.write(`re-snapshot of ${table} requested at ${lsn}\n`);
        if (!o.wait) return;
        const r = await followResnapshot(loadCaptureConfig(), table, lsn, { timeoutMs: o.timeout * 1000 });
        process.stdout.write(`re-snapshot of ${table} done in ${r.seconds.toFixed(1)} s\n`);
      }))
    .addCommand(action(
      new Command('consume').description('Run a consumer group: warehouse (star schema, CLV) or clickstream (sessions, carts)')
        .addArgument(new Argument('<group>', 'which consumer').choices(['warehouse', 'clickstream'])),
      (_o, self) => (self.processedArgs[0] === 'warehouse' ? runWarehouseConsumer() : runClickstreamConsumer())))
    .addCommand(action(new Command('api').description('Run the CLV lookup API (docs/api.md)'), () => runApi()))
    .addCommand(action(new Command('registry').description('Run the schema registry (Confluent REST API, docs/registry.md)'), () => runRegistry()))
    .addCommand(migrateCommand())
    .addCommand(action(
      // status parses its own flags (src/cli/status.ts), so `shopstream status --help` is its help.
      new Command('status').description('Show the whole pipeline: processes (pid, health), lag per group, slot WAL, dead letters, Redis outbox; exit 1 when unhealthy')
        .helpOption(false).allowUnknownOption().allowExcessArguments().argument('[flags...]'),
      (_o, self) => runStatus(self.args)))
    .addCommand(action<ReplayCliOptions>(replayCommand(), (o, self) => runReplay(o, self)))
    .addCommand(action<VerifyCliOptions>(verifyCommand(), (o) => runVerifyCli(o).catch((err: unknown) => exitOnStartupError('shopstream verify', err, VERIFY_COULD_NOT_RUN)))
      .addCommand(action<{ rebuild?: boolean }>(
        new Command('clickstream').description('Compare every clickstream model with its batch recomputation (docs/clickstream.md)')
          .option('--rebuild', 'first refresh the stored models from stg_events, in one transaction'),
        (o) => runClickstreamVerify(o))))
    .addCommand(new Command('redis').description('Redis maintenance')
      .addCommand(action<{ pageSize: number }>(redisRebuildCommand('rebuild'), (o) => runRedisRebuild(o))))
    .addCommand(generate())
    .addCommand(action(
      new Command('demo').description('Start the stack and the pipeline, write generated traffic, wait until the warehouse caught up (`demo stop` stops the pipeline)')
        .addArgument(new Argument('[action]', '"stop" stops the capture, consumers and API the demo started').choices(['stop'])),
      (_o, self) => script('demo.sh', self.args as string[])))
    .addCommand(stack());
}

/** Usage errors exit 2, like configuration errors; help exits 0. */
function exitOverrideAll(cmd: Command): void {
  cmd.exitOverride();
  for (const c of cmd.commands) exitOverrideAll(c);
}

export async function runCli(argv: string[] = process.argv): Promise<void> {
  const program = buildProgram();
  exitOverrideAll(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    process.exit(err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2);
  }
}

if (isMain(import.meta.url)) await runCli();
