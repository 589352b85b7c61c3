// The chaos suite, a few trials of it in every test run (npm run chaos runs 200).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { passed, runTrial } from '../chaos/trial.js';
import { CLI } from './helpers/mcp.js';

describe('chaos', () => {
  it.each([7, 8, 9])('keeps every invariant while servers are killed at random (seed %i)', async (seed) => {
    const report = await runTrial({ seed, db: join(mkdtempSync(join(tmpdir(), 'runledger-chaos-')), 'ledger.db'), cli: CLI, chaosMs: 2000, finishMs: 60_000 });
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
  });
});
