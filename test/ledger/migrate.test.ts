// A ledger written before runs recorded their executor (SQLite schema 3, PostgreSQL schema 1, what
// the previous release creates) opens under this one: its runs keep their keys, results, leases and
// charges; proxied calls become the proxy's runs under their own names; old stall counts are dropped.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { fingerprint, type RunLedger } from '../../src/ledger/index.js';
import { MIGRATIONS } from '../../src/ledger/migrations.js';
import { openPostgresLedger } from '../../src/ledger/postgres/store.js';
import { openSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { freshSchema, PG_URL, postgresAvailable } from '../helpers/ledgers.js';

const T0 = Date.UTC(2026, 10, 1, 12);
const ARGS = { brief: 'a red mug on oak' };
const FP = fingerprint(ARGS);
const KEY = (n: number) => `migrate-key-${String(n).padStart(6, '0')}`;
const OLD_HOLDER = 'host-a:4242:abcdef/0';

/** Runs as the previous release wrote them: every column of its runs table, in its order. */
const OLD_RUNS = [
  // id, tool, key, phase, progress, lease owner, lease expiry, attempts, stalls, ended_at
  ['run_done', 'product_shot', KEY(1), 'done', 1, null, null, 1, 0, T0 + 9],
  ['run_live', 'social_card', KEY(2), 'rendering', 0.5, OLD_HOLDER, T0 + 60_000, 4, 3, null],
  ['run_proxied', 'proxied:social_card', KEY(2), 'done', 1, null, null, 1, 0, T0 + 5],
  ['run_ticket', 'create_ticket', KEY(3), 'done', 1, null, null, 1, 0, T0 + 6],
] as const;

const OLD_COLUMNS = `id, tenant, tool, idem_key, fingerprint, cost, args, phase, progress, composing_at, rendering_at, ended_at, error,
  lease_owner, lease_expires_at, attempts, stalls, claimed_at, progressed_at, stall_backoff_ms, created_at, updated_at, deleted_at`;

function oldRow([
  id,
  tool,
  key,
  phase,
  progress,
  owner,
  expires,
  attempts,
  stalls,
  ended,
]: (typeof OLD_RUNS)[number]): unknown[] {
  return [
    id,
    'acme',
    tool,
    key,
    FP,
    tool.includes('ticket') || tool.startsWith('proxied') ? 0 : 4,
    JSON.stringify(ARGS),
    phase,
    progress,
    T0 + 1,
    T0 + 2,
    ended,
    null,
    owner,
    expires,
    attempts,
    stalls,
    T0 + 2,
    T0 + 1,
    4000,
    T0,
    T0 + 9,
    null,
  ];
}

/** A stored result: SQLite kept them in a BLOB column (plain JSON text reads back as such), PostgreSQL as text. */
class Result {
  constructor(readonly json: string) {}
}
const stored = (sqlite: boolean) => (value: unknown) =>
  value instanceof Result ? (sqlite ? Buffer.from(value.json) : value.json) : value;

/** What the previous release's run_data, charges and assets held for these runs. */
const OLD_DATA = [
  [`INSERT INTO run_data (run_id, recovery, result) VALUES ('run_done', NULL, ?)`, [new Result('{"score":1}')]],
  [`INSERT INTO run_data (run_id, recovery, result) VALUES ('run_live', ?, NULL)`, ['{"composing":{"scenes":[2]}}']],
  [
    `INSERT INTO run_data (run_id, recovery, result) VALUES ('run_proxied', NULL, ?)`,
    [new Result('{"posted":"Launch day"}')],
  ],
  [
    `INSERT INTO charges (run_id, tenant, tool, credits, provider, model, created_at) VALUES ('run_done', 'acme', 'product_shot', 4, 'builtin', NULL, 1)`,
    [],
  ],
  [
    `INSERT INTO charges (run_id, tenant, tool, credits, provider, model, created_at) VALUES ('run_proxied', 'acme', 'proxied:social_card', 0, 'poster', NULL, 1)`,
    [],
  ],
  [
    `INSERT INTO assets (sha256, mime, size, bytes, created_at) VALUES ('abc', 'image/png', 3, ?, 1)`,
    [Buffer.from([1, 2, 3])],
  ],
  [`INSERT INTO run_assets (run_id, n, sha256, meta) VALUES ('run_done', 0, 'abc', '{}')`, []],
] as const;

const ledgers: RunLedger[] = [];
afterEach(async () => {
  await Promise.all(ledgers.splice(0).map((l) => l.close()));
});

/** What the previous release's ledger answers under this one. */
async function expectCarriedOver(ledger: RunLedger, later: (ms: number) => void): Promise<void> {
  ledgers.push(ledger);
  const done = await ledger.findRun('acme', 'product_shot', KEY(1));
  expect(done).toMatchObject({ id: 'run_done', executor: 'engine', phase: 'done', result: { score: 1 }, stalls: 0 });
  expect(
    await ledger.createOrReplay({ tenant: 'acme', tool: 'product_shot', idempotencyKey: KEY(1), args: ARGS, cost: 4 }),
  ).toMatchObject({ kind: 'replayed', run: { id: 'run_done' } });
  expect((await ledger.readAsset('acme', 'run_done', 0)).bytes).toEqual(Buffer.from([1, 2, 3]));

  // One key named a rendered run and, kept apart by a prefix, a proxied call: now by their executors.
  expect(await ledger.getRun('acme', 'run_live')).toMatchObject({
    executor: 'engine',
    tool: 'social_card',
    stalls: 0,
    lease: { holder: OLD_HOLDER },
  });
  expect(await ledger.getRun('acme', 'run_proxied')).toMatchObject({
    executor: 'proxy',
    tool: 'social_card',
    result: { posted: 'Launch day' },
  });
  expect(
    await ledger.createOrReplay({ tenant: 'acme', tool: 'social_card', idempotencyKey: KEY(2), args: ARGS, cost: 4 }),
  ).toMatchObject({ run: { id: 'run_live' } });
  expect(
    await ledger.start(
      { tenant: 'acme', tool: 'social_card', executor: 'proxy', idempotencyKey: KEY(2), args: ARGS, cost: 0 },
      'proxy-1',
    ),
  ).toMatchObject({
    kind: 'replayed',
    run: { id: 'run_proxied' },
  });
  expect(await ledger.getRun('acme', 'run_ticket')).toMatchObject({ executor: 'proxy', tool: 'create_ticket' });

  // The held run is taken over at its lease's expiry, from its recovery point.
  expect(await ledger.claim('w1')).toBeNull();
  later(60_001);
  expect(await ledger.claim('w1')).toMatchObject({
    id: 'run_live',
    attempts: 5,
    stalls: 0,
    recovery: { composing: { scenes: [2] } },
  });
  expect(await ledger.usage('acme')).toMatchObject({
    runs: 4,
    charges: 2,
    byTool: { social_card: { charges: 1 }, product_shot: { charges: 1 } },
  });
}

const withPostgres = await postgresAvailable();

describe('a ledger of the previous release', () => {
  it('opens on SQLite (schema 3 to 4)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'runledger-migrate-')), 'ledger.db');
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec(
      'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT',
    );
    for (const m of MIGRATIONS.filter((m) => m.version <= 3)) {
      old.exec(m.sqlite);
      old.prepare('INSERT INTO schema_migrations VALUES (?, ?, 0)').run(m.version, m.name);
    }
    const insert = old.prepare(`INSERT INTO runs (${OLD_COLUMNS}) VALUES (${Array(23).fill('?').join(', ')})`);
    for (const run of OLD_RUNS) insert.run(...oldRow(run));
    for (const [sql, params] of OLD_DATA) old.prepare(sql).run(...params.map(stored(true)));
    old.close();
    let now = T0 + 1000;
    await expectCarriedOver(await openSqliteLedger({ path, clock: () => now }), (ms) => (now += ms));
  });

  it.runIf(withPostgres)('opens on PostgreSQL (schema 1 to 4)', async () => {
    const schema = freshSchema();
    const old = new pg.Client({ connectionString: PG_URL });
    await old.connect();
    try {
      await old.query(`CREATE SCHEMA ${schema}; SET search_path = ${schema};
        CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);`);
      await old.query(MIGRATIONS[0]!.postgres);
      await old.query(
        `INSERT INTO schema_migrations VALUES (1, 'runs, their data, content-addressed assets, charges, stream events', 0)`,
      );
      for (const run of OLD_RUNS)
        await old.query(
          `INSERT INTO runs (${OLD_COLUMNS}) VALUES (${oldRow(run)
            .map((_, i) => `$${i + 1}`)
            .join(', ')})`,
          oldRow(run),
        );
      for (const [sql, params] of OLD_DATA) {
        let n = 0;
        await old.query(
          sql.replace(/\?/g, () => `$${++n}`),
          params.map(stored(false)),
        );
      }
    } finally {
      await old.end();
    }
    let now = T0 + 1000;
    await expectCarriedOver(await openPostgresLedger({ url: PG_URL, schema, clock: () => now }), (ms) => (now += ms));
  });
});
