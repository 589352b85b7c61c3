// The chaos suite, a few trials of it in every test run (npm run chaos runs 200), on each backend.
import { describe, expect, it } from 'vitest';
import { freshLedger } from '../chaos/index.js';
import { passed, runTrial } from '../chaos/trial.js';
import { backends, PG_URL } from './helpers/ledgers.js';
import { CLI } from './helpers/mcp.js';

const trials = [
  ...[7, 8, 9].map((seed) => ({ backend: 'SQLite', seed })),
  ...(backends.some((b) => b.name === 'PostgreSQL') ? [10, 11].map((seed) => ({ backend: 'PostgreSQL', seed })) : []),
];

describe('chaos', () => {
  it.each(trials)('keeps every invariant while servers are killed at random ($backend, seed $seed)', async ({ backend, seed }) => {
    const ledger = await freshLedger(backend === 'PostgreSQL' ? PG_URL : undefined, seed);
    try {
      const report = await runTrial({ seed, db: ledger.db, cli: CLI, chaosMs: 2000, finishMs: 60_000 });
      expect(report.kills).toBeGreaterThan(0);
      expect(report.acknowledged).toBeGreaterThan(0);
      // The only refusals are calls cut off by a kill: a key, an argument or the storage never is.
      expect(Object.keys(report.refusals).filter((code) => code !== 'connection lost')).toEqual([]);
      expect({ lost: report.lost, unfinished: report.unfinished, duplicates: report.duplicates, charges: report.chargeErrors, failed: report.failed }).toEqual({
        lost: [],
        unfinished: [],
        duplicates: [],
        charges: [],
        failed: 0,
      });
      expect(passed(report)).toBe(true);
    } finally {
      await ledger.remove();
    }
  });
});
