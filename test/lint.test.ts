// The architecture rules in eslint.config.js fire: each forbidden import, linted as if it were a file
// in the directory it is forbidden in, is reported; the same import where it belongs is not.
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({ cwd: new URL('..', import.meta.url).pathname });

async function restricted(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  // Only this rule: an unused import is another rule's business.
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('import rules', () => {
  it.each([
    ['src/mcp/x.ts', "import Database from 'better-sqlite3';", /only src\/ledger\/sqlite\/ opens SQLite/],
    ['src/runs.ts', "import pg from 'pg';", /only src\/ledger\/postgres\/ opens PostgreSQL/],
    ['tools/x.ts', "import pg from 'pg';", /SQL stays in the ledger/],
    ['src/ledger/sql.ts', "import pg from 'pg';", /SQL stays in the ledger/],
    ['src/harness/x.ts', "import { openLedger } from '../ledger/index.js';", /imports neither the ledger nor compose/],
    ['src/harness/x.ts', "import type { Scene } from '../compose/scene.js';", /imports neither the ledger nor compose/],
    ['src/harness/x.ts', "import Database from 'better-sqlite3';", /SQL stays in the ledger/],
    ['src/proxy/x.ts', "import { openSqliteLedger } from '../ledger/sqlite/store.js';", /never its stores/],
    ['src/proxy/x.ts', "import type { LedgerStore } from '../ledger/store.js';", /never its stores/],
    ['src/proxy/x.ts', "import { Engine } from '../engine/engine.js';", /does not import the engine/],
    ['src/proxy/x.ts', "import pg from 'pg';", /SQL stays in the ledger/],
  ])('reports %s importing: %s', async (file, code, message) => {
    const messages = await restricted(file, code);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(message);
  });

  it.each([
    ['src/ledger/sqlite/x.ts', "import Database from 'better-sqlite3';"],
    ['src/ledger/postgres/x.ts', "import pg from 'pg';"],
    ['src/proxy/x.ts', "import { openLedger } from '../ledger/index.js';"],
    ['src/harness/x.ts', "import { UsageError } from '../config.js';"],
    ['src/runtime.ts', "import { Engine } from './engine/engine.js';"],
    ['bench/x.ts', "import pg from 'pg';"],
    ['test/helpers/x.ts', "import Database from 'better-sqlite3';"],
  ])('allows %s importing: %s', async (file, code) => {
    expect(await restricted(file, code)).toEqual([]);
  });
});
