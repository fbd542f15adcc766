import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Whether the module at `moduleUrl` (its `import.meta.url`) is the script
 * node was started with. Entry files run their work only then, so the
 * `shopstream` CLI can import them for their commands without starting
 * anything. Paths are compared resolved, as a bin symlink or a relative
 * argv path would otherwise differ from the module's own URL.
 */
export function isMain(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  return real(script) === real(fileURLToPath(moduleUrl));
}
