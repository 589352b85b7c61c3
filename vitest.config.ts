import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Crash and race tests spawn real processes; on a loaded 2-core machine they need room.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The HTTP session test measures the heap after a forced collection (globalThis.gc).
    execArgv: ['--expose-gc'],
  },
});
