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
