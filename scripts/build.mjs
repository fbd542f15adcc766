// `npm run build`: the production build. TypeScript → plain JavaScript in
// dist/ (tsc with rewriteRelativeImportExtensions, so `./x.ts` imports become
// `./x.js`), plus the files the code reads at run time, at the same relative
// places: migrations/, schemas/ and every non-TypeScript file under src/ and
// consumers/ (the Redis Lua scripts). `node dist/src/cli/shopstream.js` then
// runs without tsx; so does `shopstream` where src/ is absent (bin/shopstream.js).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist');
rmSync(out, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });

let copied = 0;
function copyAssets(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) copyAssets(path);
    else if (!name.endsWith('.ts')) {
      cpSync(path, join(out, relative(root, path)));
      copied++;
    }
  }
}
for (const dir of ['src', 'consumers']) copyAssets(join(root, dir));
for (const dir of ['migrations', 'schemas']) {
  if (existsSync(join(root, dir))) {
    cpSync(join(root, dir), join(out, dir), { recursive: true });
    copied++;
  }
}
process.stdout.write(`build: dist/ ready (${copied} asset files and folders copied)\n`);
