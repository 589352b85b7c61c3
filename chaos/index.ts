// `npm run chaos`: many seeded chaos trials (see trial.ts), a table of what happened, and a non-zero
// exit naming every broken invariant. A failing trial is re-run exactly with --seed and --trials 1.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { isPostgresUrl } from '../src/ledger/index.js';
import { passed, runTrial, type TrialReport } from './trial.js';

const USAGE = `npm run chaos -- [--trials N] [--seed S] [--chaos-ms MS] [--db postgres://...]
  --trials N     trials to run (default 200)
  --db URL       run on PostgreSQL: each trial gets a schema of its own there, dropped after it
                 (default: a fresh SQLite file per trial)
  --seed S       seed of the first trial; trial i uses S + i (default: from the clock, printed)
  --chaos-ms MS  how long each trial kills servers (default 2500)
`;

function positive(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got "${text}"`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  let options;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        trials: { type: 'string' },
        seed: { type: 'string' },
        'chaos-ms': { type: 'string' },
        db: { type: 'string' },
        help: { type: 'boolean' },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    options = {
      trials: positive('trials', values.trials, 200),
      seed: positive('seed', values.seed, Date.now() % 1_000_000),
      chaosMs: positive('chaos-ms', values['chaos-ms'], 2500),
      postgres: values.db,
    };
    if (options.postgres !== undefined && !isPostgresUrl(options.postgres))
      throw new Error(`--db takes a postgres:// URL, got "${options.postgres}"`);
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
  process.stdout.write(
    `chaos: ${options.trials} trials from seed ${options.seed} on ${options.postgres === undefined ? 'SQLite' : 'PostgreSQL'}\n`,
  );
  const reports: TrialReport[] = [];
  for (let i = 0; i < options.trials; i++) {
    const ledger = await freshLedger(options.postgres, options.seed + i);
    try {
      const report = await runTrial({
        seed: options.seed + i,
        db: ledger.db,
        cli,
        chaosMs: options.chaosMs,
        finishMs: 120_000,
      });
      reports.push(report);
      process.stderr.write(
        `  trial ${i + 1}/${options.trials} seed ${report.seed}: ${passed(report) ? 'ok' : 'BROKEN'} (${report.kills} kills, ${report.runs} runs)\n`,
      );
    } finally {
      await ledger.remove();
    }
  }
  process.stdout.write(summary(reports));
  return reports.every(passed) ? 0 : 1;
}

/** A ledger for one trial: a SQLite file in a new directory, or a new schema on the PostgreSQL server. */
export async function freshLedger(
  postgres: string | undefined,
  seed: number,
): Promise<{ db: string; remove: () => Promise<void> }> {
  if (postgres === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'runledger-chaos-'));
    return { db: join(dir, 'ledger.db'), remove: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const schema = `chaos_${seed}_${randomBytes(4).toString('hex')}`;
  const url = new URL(postgres);
  url.searchParams.set('schema', schema);
  return {
    db: url.toString(),
    remove: async () => {
      url.searchParams.delete('schema');
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

function refusals(reports: TrialReport[]): string {
  const total = new Map<string, number>();
  for (const r of reports)
    for (const [code, n] of Object.entries(r.refusals)) total.set(code, (total.get(code) ?? 0) + n);
  return total.size === 0 ? 'none' : [...total].map(([code, n]) => `${n.toLocaleString('en-US')} ${code}`).join(', ');
}

export function summary(reports: TrialReport[]): string {
  const sum = (f: (r: TrialReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  const rows: [string, string | number][] = [
    ['trials', reports.length],
    [
      'servers per trial',
      `${Math.min(...reports.map((r) => r.servers))}–${Math.max(...reports.map((r) => r.servers))}`,
    ],
    ['SIGKILLs', sum((r) => r.kills)],
    ['creates sent', sum((r) => r.creates)],
    ['creates acknowledged', sum((r) => r.acknowledged)],
    ['creates refused or cut off', refusals(reports)],
    ['runs in the ledgers', sum((r) => r.runs)],
    ['runs done', sum((r) => r.done)],
    ['runs failed', sum((r) => r.failed)],
    ['acknowledged runs lost', sum((r) => r.lost.length)],
    ['acknowledged runs not done', sum((r) => r.unfinished.length)],
    ['keys with more than one run', sum((r) => r.duplicates.length)],
    ['charge errors (≠ 1 per done run, or any on another)', sum((r) => r.chargeErrors.length)],
    ['most attempts on one run', Math.max(0, ...reports.map((r) => r.maxAttempts))],
    ['servers that did not come up', sum((r) => r.startFailures.length)],
  ];
  const lines = [
    '',
    '| | |',
    '|---|---:|',
    ...rows.map(([k, v]) => `| ${k} | ${typeof v === 'number' ? v.toLocaleString('en-US') : v} |`),
    '',
  ];
  for (const r of reports.filter((x) => !passed(x))) {
    lines.push(`BROKEN trial seed ${r.seed} (re-run: npm run chaos -- --trials 1 --seed ${r.seed}):`);
    const findings = [
      ['lost', r.lost],
      ['not done', r.unfinished],
      ['duplicate runs', r.duplicates],
      ['charges', r.chargeErrors],
      ['servers that did not come up', r.startFailures],
    ] as const;
    for (const [what, list] of findings) {
      if (list.length > 0) lines.push(`  ${what}: ${list.join('; ')}`);
    }
    if (r.failed > 0) lines.push(`  ${r.failed} run(s) failed`);
  }
  return lines.join('\n') + '\n';
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
