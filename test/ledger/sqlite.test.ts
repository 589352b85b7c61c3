import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteLedger } from '../../src/ledger/sqlite/index.js';
import { ledgerContract } from './contract.js';

ledgerContract('SQLite :memory:', async (opts) => new SqliteLedger({ path: ':memory:', ...opts }));

ledgerContract('SQLite file', async (opts) => {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-contract-'));
  return new SqliteLedger({ path: join(dir, 'ledger.db'), ...opts });
});
