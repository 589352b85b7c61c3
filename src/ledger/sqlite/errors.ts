// SQLite failures as typed errors that name the path and the cause.
import { closeSync, existsSync, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InternalError, RunledgerError, StorageUnavailableError } from '../../errors.js';

function sqliteCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null;
}

/**
 * Why a path cannot be opened for writing, found by trying: access() answers for the mode bits,
 * which root ignores, not for what the filesystem will actually allow.
 */
function openProblem(path: string): string {
  const dir = dirname(path);
  if (!existsSync(dir)) return `its directory ${dir} does not exist`;
  if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
  const probe = existsSync(path) ? path : join(dir, `.runledger-probe-${process.pid}`);
  try {
    closeSync(openSync(probe, probe === path ? 'r+' : 'wx'));
    if (probe !== path) unlinkSync(probe);
  } catch (err) {
    return `${probe === path ? path : dir} is read-only (${(err as { code?: string }).code ?? 'not writable'})`;
  }
  return 'the file cannot be opened';
}

export function storageError(err: unknown, path: string): RunledgerError {
  if (err instanceof RunledgerError) return err;
  const code = sqliteCode(err);
  const fsCode = (err as { code?: unknown } | null)?.code;
  const cause = err instanceof Error ? err.message : String(err);
  const details = { path, cause: code ?? fsCode ?? cause };
  const where = path === ':memory:' ? 'the in-memory ledger' : `the ledger at ${path}`;
  if (code === null) {
    if (fsCode === 'EACCES' || fsCode === 'EROFS' || fsCode === 'EPERM') {
      return new StorageUnavailableError(`Cannot create ${where}: the location is read-only (${cause}).`, details, err);
    }
    if (fsCode === 'ENOSPC')
      return new StorageUnavailableError(`Cannot write ${where}: the disk is full.`, details, err);
    if (fsCode === 'ENOTDIR' || fsCode === 'EEXIST') {
      return new StorageUnavailableError(`Cannot create ${where}: part of the path is not a directory.`, details, err);
    }
    return new InternalError(`Ledger failure at ${path}: ${cause}`, err);
  }
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code.startsWith('SQLITE_LOCKED')) {
    return new StorageUnavailableError(`${where} is busy (locked by another process for too long).`, details, err);
  }
  if (code === 'SQLITE_FULL') {
    return new StorageUnavailableError(
      `${where} is full (disk full or its size limit reached); nothing was written.`,
      details,
      err,
    );
  }
  if (code === 'SQLITE_NOTADB') {
    return new StorageUnavailableError(
      `${path} is not a SQLite database; point --db at a runledger ledger or a new file.`,
      details,
      err,
    );
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return new StorageUnavailableError(`${where} is read-only; nothing was written.`, details, err);
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return new StorageUnavailableError(`Cannot open ${where}: ${openProblem(path)}.`, details, err);
  }
  if (code.startsWith('SQLITE_CORRUPT')) {
    return new StorageUnavailableError(`${where} is corrupt.`, details, err);
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return new StorageUnavailableError(`I/O error on ${where} (${code}).`, details, err);
  }
  return new InternalError(`Ledger failure at ${path} (${code}): ${cause}`, err);
}
