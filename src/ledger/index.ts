// The ledger's public face: the ports, the domain types, and openLedger, which picks a store from the
// URL and loads it on demand (a stdio user on SQLite never loads `pg`).
import type { LedgerOptions } from './ledger-core.js';
import type { RunLedger } from './ports.js';
import { isPostgresUrl } from './url.js';

export * from './types.js';
export type * from './ports.js';
export type { LedgerOptions } from './ledger-core.js';
export {
  Phase,
  PHASES,
  LIVE_PHASES,
  TERMINAL_PHASES,
  isTerminal,
  isBilled,
  canAdvance,
  phaseProgress,
} from './phases.js';
export {
  fingerprint,
  canonicalJson,
  differingFields,
  keyProblem,
  assertValidKey,
  KEY_MIN,
  KEY_MAX,
} from './fingerprint.js';
export {
  DEFAULT_POOL_SIZE,
  DEFAULT_LEASE_MS,
  DEFAULT_RETENTION_MS,
  MAX_PAGE as MAX_PAGE_SIZE,
  MAX_STALLS,
  takeoverBackoffMs,
} from './rules.js';
export { holderGone, holderPid, processOwner } from './holders.js';
export { isPostgresUrl, safeLedgerUrl } from './url.js';

export interface OpenOptions extends LedgerOptions {
  /** A SQLite file path or `:memory:`, or a `postgres://` / `postgresql://` URL. */
  url: string;
  /** PostgreSQL: the schema that holds the tables, so deployments or tests can share one database. */
  schema?: string | undefined;
  /** PostgreSQL: the most connections this process opens. */
  poolSize?: number | undefined;
}

export async function openLedger(opts: OpenOptions): Promise<RunLedger> {
  if (isPostgresUrl(opts.url)) {
    const { openPostgresLedger } = await import('./postgres/store.js');
    return openPostgresLedger(opts);
  }
  const { openSqliteLedger } = await import('./sqlite/store.js');
  return openSqliteLedger({ ...opts, path: opts.url });
}
