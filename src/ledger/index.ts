// The ledger's public face: the port, its domain types, and openLedger, which picks a backend from the
// URL and loads it on demand (a stdio user on SQLite never loads `pg`).
import type { RunLedger } from './types.js';

export * from './types.js';
export { Phase, PHASES, LIVE_PHASES, TERMINAL_PHASES, isTerminal, isBilled, canAdvance, phaseProgress } from './phases.js';
export { fingerprint, fingerprintAll, canonicalJson, differingFields, keyProblem, assertValidKey, KEY_MIN, KEY_MAX } from './fingerprint.js';
export { DEFAULT_LEASE_MS, DEFAULT_RETENTION_MS, MAX_PAGE as MAX_PAGE_SIZE, MAX_STALLS, takeoverBackoffMs } from './rules.js';

export interface LedgerOptions {
  /** A SQLite file path or `:memory:`, or a `postgres://` / `postgresql://` URL. */
  url: string;
  /** PostgreSQL: the schema that holds the tables, so deployments or tests can share one database. */
  schema?: string;
  /** PostgreSQL: the most connections this process opens. */
  poolSize?: number;
  leaseMs?: number;
  retentionMs?: number;
  /** Milliseconds since the epoch; tests pass a fake clock. */
  clock?: () => number;
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** A ledger's location as it is safe to print: a PostgreSQL URL loses its password. */
export function safeLedgerUrl(url: string): string {
  if (!isPostgresUrl(url)) return url;
  try {
    const parsed = new URL(url);
    parsed.password = '';
    parsed.searchParams.delete('password');
    return parsed.toString().replace(/^(postgres(?:ql)?:\/\/[^:@/]*):@/, '$1@');
  } catch {
    return 'postgres://(an unparsable URL)';
  }
}

export async function openLedger(opts: LedgerOptions): Promise<RunLedger> {
  if (isPostgresUrl(opts.url)) {
    const { PostgresLedger } = await import('./postgres/index.js');
    return PostgresLedger.open(opts);
  }
  const { SqliteLedger } = await import('./sqlite/index.js');
  return new SqliteLedger({ path: opts.url, leaseMs: opts.leaseMs, retentionMs: opts.retentionMs, clock: opts.clock });
}
