import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../src/ledger/ledger.js';
import { SqliteStore } from '../../src/ledger/sqlite/store.js';
import { ledgerContract, type LedgerFactoryOptions } from './contract.js';
import { sqliteProbe } from './probes.js';

async function sqlite(path: string, opts: LedgerFactoryOptions) {
  const store = await SqliteStore.open({ path });
  return { ledger: new Ledger(store, opts), probe: sqliteProbe(store.database) };
}

ledgerContract('SQLite :memory:', (opts) => sqlite(':memory:', opts));
ledgerContract('SQLite file', (opts) =>
  sqlite(join(mkdtempSync(join(tmpdir(), 'runledger-contract-')), 'ledger.db'), opts),
);
