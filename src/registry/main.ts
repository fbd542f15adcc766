import { isMain } from '../lifecycle/is-main.ts';
import { runMain } from '../lifecycle/run-main.ts';
import { loadRegistryConfig } from './config.ts';
import { RegistryService } from './server.ts';

/** The schema registry process (`shopstream registry`); config from env, see docs/registry.md. */
export async function runRegistry(): Promise<void> {
  await runMain('schema-registry', (log) => [new RegistryService(loadRegistryConfig(process.env), log)]);
}

if (isMain(import.meta.url)) await runRegistry();
