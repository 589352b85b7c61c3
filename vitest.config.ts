import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Crash and race tests spawn real processes; on a loaded 2-core machine they need room.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Files run three at a time. Vitest's default on 2 cores is one (cores - 1), but most files spend
    // their time waiting on the servers they spawn: run one at a time, the suite kept 0.8 of 2 cores
    // busy. Three: npm run check 4m42s → 2m25s–2m37s here (docs/development.md); four were no faster.
    // No two files share anything: every server binds port 0, every ledger is a fresh temp file,
    // PostgreSQL schema or database, and the heap the session test measures is its own fork's.
    maxWorkers: 3,
    // The HTTP session test measures the heap after a forced collection (globalThis.gc).
    execArgv: ['--expose-gc'],
    // expect.poll waits on a condition (a page re-rendering, say); its default second is too short
    // when three files share two cores, and a condition that holds ends the wait at once anyway.
    expect: { poll: { timeout: 20_000 } },
  },
});
