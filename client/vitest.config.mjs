// Tests of @weft/client: a project of the root vitest.config.ts (npm test),
// or alone with `npx vitest run --project client`.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  test: {
    name: 'client',
    include: ['src/**/*.test.ts'],
    exclude: ['**/dist/**'],
    // The fixture project must be loaded by Node itself, not by vitest's
    // transform: locate() reads functions' source text and scopes as Node
    // sees them, and imports their modules to find exports, which only
    // matches when both come from Node's one module instance.
    server: { deps: { external: [/\/test-fixtures\//] } },
    // Node 20 cannot load the fixture's TypeScript module on its own.
    execArgv: ['--import', fileURLToPath(new URL('./test-fixtures/register-ts.mjs', import.meta.url))],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
