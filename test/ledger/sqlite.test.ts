import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { ledgerContract } from './contract.js';

ledgerContract('SQLite :memory:', async (opts) => await openSqliteLedger({ path: ':memory:', ...opts }));

ledgerContract('SQLite file', async (opts) => {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-contract-'));
  return await openSqliteLedger({ path: join(dir, 'ledger.db'), ...opts });
});
