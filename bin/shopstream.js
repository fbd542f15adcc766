#!/usr/bin/env node
// The `shopstream` command (package.json "bin"). In a source checkout it runs
// the TypeScript sources through tsx, so edits apply at once; where only the
// build exists (the runtime image, `npm run build` output shipped without
// src/) it runs dist/ under plain node. SHOPSTREAM_RUN=dist|src forces one.
import { existsSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const source = new URL('src/cli/shopstream.ts', root);
const built = new URL('dist/src/cli/shopstream.js', root);
const wanted = process.env.SHOPSTREAM_RUN ?? (existsSync(source) ? 'src' : 'dist');

let entry;
if (wanted === 'src') {
  const { register } = await import('tsx/esm/api');
  register();
  entry = source;
} else if (wanted === 'dist' && existsSync(built)) {
  entry = built;
} else {
  process.stderr.write(wanted === 'dist' ? 'shopstream: no build found; run `npm run build` first\n' : `shopstream: SHOPSTREAM_RUN must be src or dist, got "${wanted}"\n`);
  process.exit(2);
}
const { runCli } = await import(entry.href);
await runCli();
