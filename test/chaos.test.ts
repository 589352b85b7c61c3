// The chaos suite, a few trials of it in every test run (npm run chaos runs 200), on each backend.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshLedger, summary } from '../chaos/index.js';
import { passed, runTrial } from '../chaos/trial.js';
import { backends, PG_URL } from './helpers/ledgers.js';
import { CLI } from './helpers/mcp.js';

const trials = [
  ...[7, 8, 9].map((seed) => ({ backend: 'SQLite', seed })),
  ...(backends.some((b) => b.name === 'PostgreSQL') ? [10, 11].map((seed) => ({ backend: 'PostgreSQL', seed })) : []),
];

describe('chaos', () => {
  it.each(trials)(
    'keeps every invariant while servers are killed at random ($backend, seed $seed)',
    async ({ backend, seed }) => {
      const ledger = await freshLedger(backend === 'PostgreSQL' ? PG_URL : undefined, seed);
      try {
        const report = await runTrial({ seed, db: ledger.db, cli: CLI, chaosMs: 2000, finishMs: 60_000 });
        expect(report.kills).toBeGreaterThan(0);
        expect(report.acknowledged).toBeGreaterThan(0);
        // The only refusals are calls cut off by a kill: a key, an argument or the storage never is.
        expect(Object.keys(report.refusals).filter((code) => code !== 'connection lost')).toEqual([]);
        expect({
          lost: report.lost,
          unfinished: report.unfinished,
          duplicates: report.duplicates,
          charges: report.chargeErrors,
          failed: report.failed,
          startFailures: report.startFailures,
        }).toEqual({ lost: [], unfinished: [], duplicates: [], charges: [], failed: 0, startFailures: [] });
        expect(passed(report)).toBe(true);
      } finally {
        await ledger.remove();
      }
    },
  );

  it('reports a server that does not come up as a broken trial, with what it said, instead of stopping', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runledger-chaos-nostart-'));
    try {
      const cli = join(dir, 'refuses.mjs');
      writeFileSync(
        cli,
        `process.stderr.write('runledger: cannot open the ledger (disk full)\\n'); process.exit(1);\n`,
      );
      const report = await runTrial({ seed: 1, db: join(dir, 'ledger.db'), cli, chaosMs: 300, finishMs: 1000 });
      expect(report.startFailures.length).toBeGreaterThan(0);
      expect(report.startFailures[0]).toContain('cannot open the ledger (disk full)');
      expect(report.acknowledged).toBe(0);
      expect(passed(report)).toBe(false);
      expect(summary([report])).toMatch(/BROKEN trial seed 1[^]*servers that did not come up: .*disk full/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
