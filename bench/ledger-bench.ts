// Ledger operations per second beside raw better-sqlite3 on the same disk, in the same run:
// a fresh create against one durable insert, a replay against one indexed point lookup.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteLedger } from '../src/ledger/sqlite/index.js';
import { BENCH_REQUEST, median, opsPerSecond, type Comparison } from './measure.js';

const ROUNDS = 5;
const WRITES_PER_ROUND = 400;
const READS_PER_ROUND = 40_000;
/** Arguments the size of a real product_shot request. */
const ARGS = {
  ...BENCH_REQUEST,
  size: '4:3',
  brand_kit: {
    name: 'Acme',
    palette: [
      { hex: '#1D3557', role: 'primary' },
      { hex: '#F1FAEE', role: 'background' },
      { hex: '#E63946', role: 'accent' },
    ],
    logo_text: 'ACME',
    tone_words: ['warm', 'honest'],
    banned_phrases: ['cheap'],
  },
};

export async function benchLedger(): Promise<Comparison[]> {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-bench-'));
  try {
    const raw = new Database(join(dir, 'raw.db'));
    raw.pragma('journal_mode = WAL');
    raw.pragma('synchronous = FULL');
    raw.exec('CREATE TABLE t (k TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, args TEXT NOT NULL)');
    const rawInsert = raw.prepare('INSERT INTO t (k, fingerprint, args) VALUES (?, ?, ?)');
    const rawLookup = raw.prepare('SELECT * FROM t WHERE k = ?');
    const argsText = JSON.stringify(ARGS);
    const fp = 'f'.repeat(64);

    const ledger = new SqliteLedger({ path: join(dir, 'ledger.db') });
    const request = (key: string) => ({ tenant: 'bench', tool: 'product_shot', idempotencyKey: key, args: ARGS, cost: 4 });

    const rates = { rawInsert: [] as number[], create: [] as number[], rawLookup: [] as number[], replay: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved rounds, so drift in the machine's load falls on both sides alike.
      const keys = Array.from({ length: WRITES_PER_ROUND }, (_, i) => `bench-key-${round}-${String(i).padStart(6, '0')}`);
      rates.rawInsert.push(await opsPerSecond(keys.length, (i) => rawInsert.run(keys[i], fp, argsText)));
      rates.create.push(await opsPerSecond(keys.length, (i) => ledger.createOrReplay(request(keys[i]!))));
      rates.rawLookup.push(await opsPerSecond(READS_PER_ROUND, (i) => rawLookup.get(keys[i % keys.length])));
      rates.replay.push(await opsPerSecond(READS_PER_ROUND, (i) => ledger.createOrReplay(request(keys[i % keys.length]!))));
    }
    raw.close();
    await ledger.close();

    const rawInsertRate = median(rates.rawInsert);
    const rawLookupRate = median(rates.rawLookup);
    return [
      {
        operation: 'fresh create (fenced insert, durable)',
        measured: median(rates.create),
        baselineLabel: 'raw durable insert',
        baseline: rawInsertRate,
        ratio: median(rates.create) / rawInsertRate,
        target: 0.5,
        unit: 'ops/s',
      },
      {
        operation: 'replay (same key, same arguments)',
        measured: median(rates.replay),
        baselineLabel: 'raw indexed point lookup',
        baseline: rawLookupRate,
        ratio: median(rates.replay) / rawLookupRate,
        target: 0.5,
        unit: 'ops/s',
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
