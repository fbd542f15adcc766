import { Command, InvalidArgumentError, Option } from 'commander';
import pg from 'pg';
import { loadStackConfig } from '../config/index.ts';
import { isMain } from '../lifecycle/is-main.ts';
import { exitOnStartupError } from '../lifecycle/run-main.ts';
import { createLogger } from '../logger.ts';
import { TrafficGenerator } from '../generator/writer.ts';

/**
 * `npm run generate -- [--customers N] [--products N] [--orders N] [--rate R --duration S]`
 * Seeds the demo source with a catalogue and places orders, then optionally
 * keeps writing steady traffic at `rate` orders per second.
 */
function count(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number');
  return Number(value);
}

export interface GenerateOptions { sourceSchema: string; /** the flag's old name */ schema?: string; customers: number; products: number; orders: number; perTransaction: number; rate: number; duration: number; seed: number }

/** The `generate` command's flags; `shopstream generate` and this file's own entry both parse with it. */
export function generateCommand(): Command {
  return new Command('generate')
    .description('Write generated shop traffic into the source database (catalogue, orders, then optionally steady traffic)')
    .option('--source-schema <name>', 'source schema', 'public')
    .addOption(new Option('--schema <name>', 'old name of --source-schema').hideHelp())
    .option('--customers <n>', 'customers to create (when the catalogue is empty)', count, 1000)
    .option('--products <n>', 'products to create (when the catalogue is empty)', count, 200)
    .option('--orders <n>', 'orders to place at once', count, 2000)
    .option('--per-transaction <n>', 'orders per source transaction for the initial orders', count, 1)
    .option('--rate <n>', 'then place this many orders per second', count, 0)
    .option('--duration <seconds>', 'for this long', count, 0)
    .option('--seed <n>', 'random seed', count, 42);
}

export async function runGenerate(o: GenerateOptions): Promise<void> {
  const log = createLogger('generate');
  const pool = new pg.Pool({ connectionString: loadStackConfig().sourceUrl, max: 2 });
  try {
    const gen = new TrafficGenerator(pool, { schema: o.schema ?? o.sourceSchema, seed: o.seed }, log);
    await gen.resume();
    if (!gen.hasCatalog) await gen.seedCatalog(o.customers, o.products);
    const t0 = Date.now();
    await gen.placeOrders(o.orders, o.perTransaction);
    for (let i = 0; i < o.orders; i++) await gen.sideEffects();
    log.info({ ...gen.stats, ms: Date.now() - t0 }, 'initial traffic written');
    if (o.rate > 0 && o.duration > 0) {
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      process.once('SIGTERM', () => ac.abort());
      await gen.run({ ordersPerSecond: o.rate, durationMs: o.duration * 1000, signal: ac.signal });
      log.info(gen.stats, 'steady traffic done');
    }
  } finally {
    await pool.end();
  }
}

if (isMain(import.meta.url)) runGenerate(generateCommand().parse().opts<GenerateOptions>()).catch((err) => exitOnStartupError('generate', err));
