// Real OS processes racing on one SQLite file: the unique constraint is the only fence.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { SqliteLedger } from '../../src/ledger/sqlite/index.js';

const CLIENT = new URL('../fixtures/race-client.mjs', import.meta.url).pathname;
const PROCESSES = 8;
const CALLS = 50;

type Outcome = { kind: string; runId?: string; name?: string; code?: string | null; message?: string };

async function race(dbPath: string, mode: 'same' | 'distinct'): Promise<Outcome[]> {
  const children = Array.from({ length: PROCESSES }, (_, i) =>
    spawn(process.execPath, [CLIENT, dbPath, mode, String(CALLS), String(i)], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  const exits = children.map((child) => new Promise((resolve) => child.once('exit', resolve)));
  const readers = children.map((child) => createInterface({ input: child.stdout })[Symbol.asyncIterator]());
  const nextLine = async (i: number): Promise<string> => {
    const { value, done } = await readers[i]!.next();
    if (done) throw new Error(`race client ${i} exited early`);
    return value as string;
  };
  // Every process has opened the ledger before any fires: the calls really overlap.
  expect(await Promise.all(children.map((_, i) => nextLine(i)))).toEqual(Array(PROCESSES).fill('ready'));
  for (const child of children) child.stdin.end('go\n');
  const results = await Promise.all(children.map((_, i) => nextLine(i)));
  await Promise.all(exits);
  return results.flatMap((line) => JSON.parse(line) as Outcome[]);
}

describe('cross-process race on one SQLite file', () => {
  it(`${PROCESSES} processes x ${CALLS} identical creates make exactly one run`, async () => {
    const dbPath = join(mkdtempSync(join(tmpdir(), 'runledger-race-')), 'ledger.db');
    new SqliteLedger({ path: dbPath }).close();
    const outcomes = await race(dbPath, 'same');
    expect(outcomes).toHaveLength(PROCESSES * CALLS);
    expect(outcomes.filter((o) => o.kind === 'error')).toEqual([]);
    expect(outcomes.filter((o) => o.kind === 'created')).toHaveLength(1);
    expect(new Set(outcomes.map((o) => o.runId)).size).toBe(1);
    const ledger = new SqliteLedger({ path: dbPath });
    const usage = await ledger.usage('racers');
    await ledger.close();
    expect(usage.runs).toBe(1);
    expect(usage.replaysAbsorbed).toBe(PROCESSES * CALLS - 1);
  });

  it(`${PROCESSES} processes x ${CALLS} distinct keys make exactly ${PROCESSES * CALLS} runs`, async () => {
    const dbPath = join(mkdtempSync(join(tmpdir(), 'runledger-race-')), 'ledger.db');
    // Not pre-created: the processes also race to create the file and run its migrations.
    const outcomes = await race(dbPath, 'distinct');
    expect(outcomes.filter((o) => o.kind === 'error')).toEqual([]);
    expect(outcomes.filter((o) => o.kind === 'created')).toHaveLength(PROCESSES * CALLS);
    expect(new Set(outcomes.map((o) => o.runId)).size).toBe(PROCESSES * CALLS);
    const ledger = new SqliteLedger({ path: dbPath });
    const usage = await ledger.usage('racers');
    await ledger.close();
    expect(usage.runs).toBe(PROCESSES * CALLS);
  });
});
