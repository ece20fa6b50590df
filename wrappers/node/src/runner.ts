#!/usr/bin/env node
/**
 * The algorithm process for `env: nodejs` when the algorithm's code has no
 * main of its own: loads the entry point's exported start/init/stop (HKube's
 * "no code" form) and serves tasks with run().
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run, type Algorithm } from './algorithm.js';

async function main(): Promise<void> {
  const dir = process.env['WEFT_ALGORITHM_PATH'] ?? process.cwd();
  const entry = process.env['WEFT_ALGORITHM_ENTRY'] || 'index.js';
  const file = resolve(join(dir, entry));
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown> & { default?: unknown };
  // CommonJS modules arrive as { default: module.exports }; ESM as named exports.
  const src = (typeof mod['start'] === 'function' ? mod : (mod.default ?? {})) as Partial<Algorithm>;
  if (typeof src.start !== 'function') {
    throw new Error(`${file} does not export a start(args, api) function`);
  }
  await run(src as Algorithm);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`weft runner: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
