// @ts-check
// Flat config: ESLint's recommended rules plus typescript-eslint's type-aware
// set for TypeScript. Type information comes from the workspace tsconfigs
// through the project service; plain JavaScript (config files, scripts) is
// linted without it.
import { fileURLToPath } from 'node:url';
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['**/dist/**', '**/gen/**', '**/node_modules/**', 'coverage/**', '.weft/**']),
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: globals.node,
      parserOptions: {
        projectService: {
          // Tests and vitest.config.ts are left out of the build tsconfigs
          // (they must not land in dist/), so they get a default project with
          // the same compiler options. Globs here may not use `**`.
          allowDefaultProject: [
            'vitest.config.ts',
            '*/src/*.test.ts',
            '*/src/*/*.test.ts',
            '*/src/*/*/*.test.ts',
            '*/*/src/*.test.ts',
            '*/*/src/*/*.test.ts',
            '*/src/*/*.contract.ts',
            '*/src/*/*/*.contract.ts',
            // Contract suites are tests too (control-plane/tsconfig.json leaves them out of dist).
            'control-plane/src/ports/contracts/*.ts',
          ],
          defaultProject: 'tsconfig.base.json',
          maximumDefaultProjectFileMatchCount_THIS_WILL_SLOW_DOWN_LINTING: 200,
        },
        // import.meta.dirname needs Node 20.11; engines allows any Node 20.
        tsconfigRootDir: fileURLToPath(new URL('.', import.meta.url)),
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Ports and adapters: only the composition root (app/) chooses adapters;
    // index.ts re-exports a few for the benchmarks. Everything else talks to ports.
    files: ['control-plane/src/**/*.ts'],
    ignores: ['control-plane/src/app/**', 'control-plane/src/index.ts', 'control-plane/src/adapters/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/adapters/**'],
              message: 'Only app/ (the composition root) may import adapters; depend on the port in ports/ instead.',
            },
          ],
        },
      ],
    },
  },
  {
    // An adapter implements ports; it does not reach into another adapter folder.
    files: ['control-plane/src/adapters/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              // Gitignore order: any sibling folder, except what climbs out of adapters/, but adapters/ again.
              group: ['../*/**', '!../../**', '../../adapters/**'],
              message: 'An adapter may not import another adapter; share code through ports/ or domain/.',
            },
          ],
        },
      ],
    },
  },
  {
    // The domain is pure: no ports, no adapters.
    files: ['control-plane/src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/ports/**', '**/adapters/**'], message: 'domain/ is pure: it imports no ports or adapters.' },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    files: ['**/*.test.ts'],
    rules: {
      // A test that reads a value it just put in place may assert it is there.
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
