// Real OS processes racing on one ledger (a SQLite file, a PostgreSQL database): the unique constraint
// is the only fence.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { openLedger } from '../../src/ledger/index.js';
import { freshSchema, PG_URL, postgresAvailable } from '../helpers/ledgers.js';

const CLIENT = new URL('../fixtures/race-client.mjs', import.meta.url).pathname;
const PROCESSES = 8;
const CALLS = 50;

type Outcome = { kind: string; runId?: string; name?: string; code?: string | null; message?: string };

interface Target {
  url: string;
  /** A PostgreSQL schema, or '-' for none. */
  schema: string;
}

async function race(target: Target, mode: 'same' | 'distinct'): Promise<Outcome[]> {
  const children = Array.from({ length: PROCESSES }, (_, i) =>
    spawn(process.execPath, [CLIENT, target.url, target.schema, mode, String(CALLS), String(i)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
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

async function usageOf(target: Target) {
  const ledger = await openLedger({ url: target.url, schema: target.schema === '-' ? undefined : target.schema });
  try {
    return await ledger.usage('racers');
  } finally {
    await ledger.close();
  }
}

const sqliteFile = (): Target => ({
  url: join(mkdtempSync(join(tmpdir(), 'runledger-race-')), 'ledger.db'),
  schema: '-',
});
const postgresSchema = (): Target => ({ url: PG_URL, schema: freshSchema() });
const targets = [
  { name: 'one SQLite file', fresh: sqliteFile },
  ...((await postgresAvailable()) ? [{ name: 'one PostgreSQL database', fresh: postgresSchema }] : []),
];

describe.each(targets)('cross-process race on $name', ({ fresh }) => {
  it(`${PROCESSES} processes x ${CALLS} identical creates make exactly one run`, async () => {
    const target = fresh();
    await (await openLedger({ url: target.url, schema: target.schema === '-' ? undefined : target.schema })).close();
    const outcomes = await race(target, 'same');
    expect(outcomes).toHaveLength(PROCESSES * CALLS);
    expect(outcomes.filter((o) => o.kind === 'error')).toEqual([]);
    expect(outcomes.filter((o) => o.kind === 'created')).toHaveLength(1);
    expect(new Set(outcomes.map((o) => o.runId)).size).toBe(1);
    const usage = await usageOf(target);
    expect(usage.runs).toBe(1);
    expect(usage.replaysAbsorbed).toBe(PROCESSES * CALLS - 1);
  });

  it(`${PROCESSES} processes x ${CALLS} distinct keys make exactly ${PROCESSES * CALLS} runs`, async () => {
    // Not prepared: the processes also race to create the file or schema and run its migrations.
    const target = fresh();
    const outcomes = await race(target, 'distinct');
    expect(outcomes.filter((o) => o.kind === 'error')).toEqual([]);
    expect(outcomes.filter((o) => o.kind === 'created')).toHaveLength(PROCESSES * CALLS);
    expect(new Set(outcomes.map((o) => o.runId)).size).toBe(PROCESSES * CALLS);
    expect((await usageOf(target)).runs).toBe(PROCESSES * CALLS);
  });
});
