import { readFileSync } from 'node:fs';
import { mkdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { sha256 } from './manifest.js';

/**
 * weft's own packages, which every Node worker ships and so provides to the
 * code it runs: staging leaves them out (a closure that imports
 * `@weft/client` would otherwise upload the TypeScript compiler with it), and
 * the worker makes them importable from the stages it lays out
 * ({@link provideRoot}).
 */
export const WORKER_PACKAGES: readonly string[] = [
  '@weft/client',
  '@weft/common',
  '@weft/proto',
  '@weft/stage',
  '@weft/wrapper',
];

/**
 * The directory of each package that `resolve` can find, by name. Pass
 * `(s) => import.meta.resolve(s)` so that packages are looked up where the
 * caller is installed (ESM ignores NODE_PATH, so that is the only way the
 * caller's copy can be found). Packages it cannot resolve are left out.
 */
export function packageDirs(names: readonly string[], resolve: (specifier: string) => string): Map<string, string> {
  const dirs = new Map<string, string>();
  for (const name of names) {
    let file: string;
    try {
      file = fileURLToPath(resolve(name));
    } catch {
      continue;
    }
    // The package directory is the nearest one above the entry whose package.json names the package.
    for (let dir = dirname(file); dirname(dir) !== dir; dir = dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown };
        if (pkg.name === name) {
          dirs.set(name, dir);
          break;
        }
      } catch {
        // No package.json here: keep going up.
      }
    }
  }
  return dirs;
}

/**
 * Makes packages importable from every stage laid out below the returned
 * directory: it holds `node_modules/<name>` links to each package's
 * directory, and Node's lookup of a bare specifier walks up from the staged
 * module to them. Stages laid out in `<returned>/<stageId>` therefore stay
 * exactly their manifest's files, and the directory's name is a hash of the
 * links, so installations that provide different copies never share one.
 * Idempotent and safe to call from concurrent processes.
 */
export async function provideRoot(cacheDir: string, dirs: ReadonlyMap<string, string>): Promise<string> {
  const links = [...dirs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const root = join(cacheDir, `with-${sha256(JSON.stringify(links)).slice(0, 16)}`);
  for (const [name, target] of links) {
    const link = join(root, 'node_modules', ...name.split('/'));
    const current = await readlink(link).catch(() => undefined);
    if (current === target) continue;
    await mkdir(dirname(link), { recursive: true });
    // A new link renamed into place: a concurrent reader sees the old link or the new one, never none.
    const tmp = `${link}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await symlink(target, tmp, 'dir');
      await rename(tmp, link);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
  return root;
}
