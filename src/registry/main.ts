import { runMain } from '../lifecycle/run-main.ts';
import { loadRegistryConfig } from './config.ts';
import { RegistryService } from './server.ts';

// node --import tsx src/registry/main.ts — config from env, see docs/registry.md.
await runMain('schema-registry', (log) => [new RegistryService(loadRegistryConfig(process.env), log)]);
