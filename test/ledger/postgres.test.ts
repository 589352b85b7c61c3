import { describe } from 'vitest';
import { PostgresLedger } from '../../src/ledger/postgres/index.js';
import { freshSchema, PG_URL, postgresAvailable } from '../helpers/ledgers.js';
import { ledgerContract } from './contract.js';

describe.skipIf(!(await postgresAvailable()))('PostgreSQL', () => {
  ledgerContract('PostgreSQL', (opts) => PostgresLedger.open({ url: PG_URL, schema: freshSchema(), ...opts }));
});
