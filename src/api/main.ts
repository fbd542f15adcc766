import { isMain } from '../lifecycle/is-main.ts';
import { runMain } from '../lifecycle/run-main.ts';
import { loadApiConfig } from './config.ts';
import { ApiService } from './server.ts';
import { loadStatusPageConfig } from './status/config.ts';

/** The CLV API process (`shopstream api`, `npm run api`); config from env, see docs/api.md. */
export async function runApi(): Promise<void> {
  await runMain('clv-api', (log) => [new ApiService(loadApiConfig(process.env), log, loadStatusPageConfig(process.env))]);
}

if (isMain(import.meta.url)) await runApi();
