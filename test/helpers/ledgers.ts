// The ledger backends every backend-neutral test runs on: SQLite always, PostgreSQL when a server is
// there (and always under CI, where a missing server fails the run instead of skipping it).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll } from 'vitest';
import type { RunLedger } from '../../src/ledger/index.js';
import { openPostgresLedger } from '../../src/ledger/postgres/store.js';
import { openSqliteLedger } from '../../src/ledger/sqlite/store.js';

/** The PostgreSQL server the tests use; each test gets a schema of its own in it. */
export const PG_URL = process.env.RUNLEDGER_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

let reachable: Promise<boolean> | undefined;

/** Whether PostgreSQL answers at PG_URL. Under CI its absence is an error, not a skip. */
export function postgresAvailable(): Promise<boolean> {
  return (reachable ??= (async () => {
    const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch (err) {
      if (process.env.CI)
        throw new Error(`CI needs PostgreSQL at ${PG_URL} (${(err as Error).message}); .ci/run starts it`, {
          cause: err,
        });
      process.stderr.write(
        `PostgreSQL tests skipped: nothing answers at ${PG_URL} (${(err as Error).message}). ` +
          'Start PostgreSQL (see docs/development.md), or point RUNLEDGER_TEST_PG at one.\n',
      );
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  })());
}

const schemas: string[] = [];

/** A new, empty schema name; every schema made here is dropped when the test file ends. */
export function freshSchema(): string {
  const schema = `t_${randomBytes(8).toString('hex')}`;
  schemas.push(schema);
  return schema;
}

afterAll(async () => {
  if (schemas.length === 0) return;
  const client = new pg.Client({ connectionString: PG_URL });
  try {
    await client.connect();
    for (const schema of schemas.splice(0)) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end().catch(() => undefined);
  }
});

export interface LedgerSettings {
  clock?: () => number;
  leaseMs?: number;
  retentionMs?: number;
}

export interface Backend {
  name: string;
  open(settings?: LedgerSettings): Promise<RunLedger>;
}

const sqlite: Backend = {
  name: 'SQLite',
  open: (settings = {}) => openSqliteLedger({ path: ':memory:', ...settings }),
};
const postgres: Backend = {
  name: 'PostgreSQL',
  open: (settings = {}) => openPostgresLedger({ url: PG_URL, schema: freshSchema(), ...settings }),
};

/** The backends to run on here: PostgreSQL only when it is reachable. */
export const backends: Backend[] = (await postgresAvailable()) ? [sqlite, postgres] : [sqlite];
