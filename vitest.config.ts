import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Integration tests share the machine's two cores; running files one at a
    // time keeps timing-sensitive tests (heartbeats, grace periods) honest.
    fileParallelism: false,
    projects: [
      {
        test: {
          name: 'weft',
          globals: false,
          include: ['{common,stage,control-plane,wrappers/node}/src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: ['**/node_modules/**', '**/dist/**'],
          // Integration tests start real processes; give slow CI machines room.
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      // @weft/client loads its fixture project through Node itself (see its config).
      './client/vitest.config.mjs',
    ],
  },
});
