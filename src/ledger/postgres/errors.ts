// PostgreSQL failures as typed errors that name the server (never its password) and the cause.
import { InternalError, RunledgerError, StorageUnavailableError } from '../../errors.js';
import { safeLedgerUrl } from '../url.js';

/** The URL as it is safe to print: the password removed, the schema named. */
export function describeUrl(url: string, schema: string): string {
  const safe = safeLedgerUrl(url);
  return `${safe}${safe.includes('?') ? '&' : '?'}schema=${schema}`;
}

/** host:port of a URL, for messages. */
export function serverOf(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
  } catch {
    return '(unknown server)';
  }
}

/** Errors that mean the server cannot be reached or is going away: retry later, nothing was half-written. */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  '57P01', // admin_shutdown (pg_terminate_backend, a restart)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '53300', // too_many_connections
  '53100', // disk_full
  '53200', // out_of_memory
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

const UNAVAILABLE_MESSAGES =
  /Connection terminated|connection timeout|Client has encountered a connection error|Connection ended|timeout exceeded when trying to connect|server closed the connection|not currently accepting connections|the database system is (starting up|shutting down)/i;

export function storageError(err: unknown, url: string): RunledgerError {
  if (err instanceof RunledgerError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const cause = err instanceof Error ? err.message : String(err);
  const server = serverOf(url);
  if (
    (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) ||
    UNAVAILABLE_MESSAGES.test(cause)
  ) {
    return new StorageUnavailableError(
      `The PostgreSQL ledger at ${server} is unavailable (${cause}).`,
      { server, cause: typeof code === 'string' ? code : cause },
      err,
    );
  }
  if (code === '28P01' || code === '28000') {
    return new StorageUnavailableError(
      `PostgreSQL at ${server} refused the login (${cause}); check the user and password in the URL.`,
      { server, cause: code },
      err,
    );
  }
  if (code === '3D000') {
    return new StorageUnavailableError(
      `PostgreSQL at ${server} has no such database (${cause}).`,
      { server, cause: code },
      err,
    );
  }
  return new InternalError(`Ledger failure at ${server}${typeof code === 'string' ? ` (${code})` : ''}: ${cause}`, err);
}
