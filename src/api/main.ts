import { runMain } from '../lifecycle/run-main.ts';
import { loadApiConfig } from './config.ts';
import { ApiService } from './server.ts';

// npm run api — config from env, see docs/api.md.
await runMain('clv-api', (log) => [new ApiService(loadApiConfig(process.env), log)]);
