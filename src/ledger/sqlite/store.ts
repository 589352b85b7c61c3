// The embedded store: one SQLite file (WAL, synchronous=FULL) that several processes may share.
// better-sqlite3 is synchronous; it gets the async face the Ledger is written against as Kysely's
// SQLite driver gives it one: a connection mutex, BEGIN IMMEDIATE and COMMIT around an async body
// whose awaits resolve at once (every statement runs when it is called), so one code path serves
// this store and PostgreSQL's. Its capabilities: reads cost microseconds, a change epoch from PRAGMA
// data_version (the replay fast path), and group commit of fenced inserts.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { InternalError } from '../../errors.js';
import type { LedgerOptions } from '../ledger-core.js';
import { Ledger } from '../ledger.js';
import { migrate } from '../migrations.js';
import { SqlOps, type SqlDialect, type SqlDriver } from '../sql.js';
import type { Awaitable, LedgerStore, RunRecord, StoreOps } from '../store.js';
import type { JsonObject } from '../types.js';
import { storageError } from './errors.js';
import { SqliteEvents } from './events.js';
import { packResultJson, unpackResult } from './result-codec.js';
import { ConnectionMutex, TickBatch } from './serial.js';

export interface SqliteStoreOptions {
  /** File path, or ':memory:'. */
  path: string;
  busyTimeoutMs?: number;
  /** FULL (default) makes an acknowledged key survive power loss. */
  synchronous?: 'FULL' | 'NORMAL';
  /** Caps the file size in pages: how tests simulate a full disk. */
  maxPageCount?: number;
}

/** SQLite's words where they differ. */
const SQLITE: SqlDialect = {
  // The writer holds the whole file from BEGIN IMMEDIATE on.
  forUpdate: '',
  forUpdateSkipLocked: '',
  jsonList: (param) => `SELECT value FROM json_each(${param})`,
  jsonPairs: (param) => `SELECT value ->> 0 AS id, value ->> 1 AS n FROM json_each(${param})`,
  packResult: packResultJson,
  unpackResult: (stored) => unpackResult(stored as Buffer | null | undefined),
  isForeignKeyViolation: (err) => (err as { code?: unknown }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY',
};

/** Statements prepared once each, run to completion at once; rows come raw (arrays), which better-sqlite3 builds fastest. */
class SqliteDriver implements SqlDriver {
  readonly dialect = SQLITE;
  private readonly readers = new Map<string, Database.Statement<unknown[], unknown[]>>();
  private readonly writers = new Map<string, Database.Statement<unknown[]>>();

  constructor(private readonly db: Database.Database) {}

  rows(sql: string, params: readonly unknown[]): unknown[][] {
    let statement = this.readers.get(sql);
    if (statement === undefined)
      this.readers.set(sql, (statement = this.db.prepare<unknown[], unknown[]>(sql).raw(true)));
    return statement.all(...params);
  }

  run(sql: string, params: readonly unknown[]): number {
    let statement = this.writers.get(sql);
    if (statement === undefined) this.writers.set(sql, (statement = this.db.prepare<unknown[]>(sql)));
    return statement.run(...params).changes;
  }
}

interface PendingInsert {
  run: RunRecord;
  args: JsonObject;
  resolve(inserted: boolean): void;
  reject(err: unknown): void;
}

export class SqliteStore implements LedgerStore {
  readonly readsAreCheap = true;
  readonly location: string;
  readonly events: SqliteEvents;
  private readonly mutex: ConnectionMutex;
  private readonly ops: SqlOps;
  private readonly tx;
  private readonly inserts = new TickBatch<PendingInsert>((batch) => void this.commitInserts(batch));
  private epoch = 0;
  private seen: [dataVersion: number, ownCommits: number] = [-1, -1];
  /** Transactions this connection has committed: its own changes, which data_version does not count. */
  private ownCommits = 0;

  private constructor(
    private readonly db: Database.Database,
    eventsDb: Database.Database,
    private readonly synchronous: 'FULL' | 'NORMAL',
  ) {
    this.location = db.name;
    this.mutex = mutexOf(db.name);
    this.ops = new SqlOps(new SqliteDriver(db), true);
    this.events = new SqliteEvents(eventsDb, this.mutex);
    this.tx = guard(db.name, () => ({
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      // A prepared PRAGMA, not a query of pragma_data_version: that table compiles a PRAGMA on every read.
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
      ping: db.prepare('SELECT 1'),
    }));
  }

  static async open(opts: SqliteStoreOptions): Promise<SqliteStore> {
    const db = await openDatabase(opts, true);
    // Stream events are written on their own connection with synchronous=NORMAL: they must survive a
    // process restart (WAL gives that) but not power loss, and an fsync per SSE message would halve
    // HTTP throughput. Runs, keys and charges stay on the FULL connection.
    const eventsDb = opts.path === ':memory:' ? db : await openDatabase({ ...opts, synchronous: 'NORMAL' }, false);
    return new SqliteStore(db, eventsDb, opts.synchronous ?? 'FULL');
  }

  /** The connection that writes runs, for tests that look at its settings. */
  get database(): Database.Database {
    return this.db;
  }

  changeEpoch(): number {
    try {
      // Other connections' commits move data_version; this one's are counted as they commit (every
      // write to runs goes through transaction()), which saves a statement on every replay.
      const dataVersion = this.tx.dataVersion.get()!;
      if (dataVersion !== this.seen[0] || this.ownCommits !== this.seen[1]) {
        this.seen = [dataVersion, this.ownCommits];
        this.epoch++;
      }
      return this.epoch;
    } catch {
      return NaN;
    }
  }

  async write<T>(body: (tx: StoreOps) => Promise<T>, opts: { durable?: boolean } = {}): Promise<T> {
    await this.mutex.lock();
    // In WAL mode, synchronous=NORMAL commits to the log without an fsync. Switched for this one
    // transaction only, under the mutex, so no other write slips in under it. (Not a prepared
    // statement: SQLite applies this pragma when it compiles it, not when it runs.)
    const relaxed = opts.durable === false && this.synchronous === 'FULL';
    try {
      if (relaxed) this.db.pragma('synchronous = NORMAL');
      return await this.transaction(() => body(this.ops));
    } catch (err) {
      throw storageError(err, this.location);
    } finally {
      if (relaxed) this.db.pragma(`synchronous = ${this.synchronous}`);
      this.mutex.unlock();
    }
  }

  /** BEGIN IMMEDIATE, `body`, COMMIT; the caller holds the mutex. */
  private async transaction<T>(body: () => Promise<T>): Promise<T> {
    this.tx.begin.run();
    try {
      const result = await body();
      this.tx.commit.run();
      this.ownCommits++;
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.tx.rollback.run();
      throw err;
    }
  }

  /**
   * Group commit: fenced inserts that arrive in one tick share one transaction (one fsync) instead of
   * queueing for one each. Every caller still hears back only after the commit that holds its row.
   */
  fence(run: RunRecord, args: JsonObject): Promise<boolean> {
    return new Promise((resolve, reject) => this.inserts.add({ run, args, resolve, reject }));
  }

  private async commitInserts(batch: PendingInsert[]): Promise<void> {
    const insert = (items: PendingInsert[]) =>
      this.transaction(async () => {
        const inserted: boolean[] = [];
        for (const item of items) inserted.push(await this.ops.insertRun(item.run, item.args));
        return inserted;
      });
    await this.mutex.lock();
    try {
      (await insert(batch)).forEach((inserted, i) => batch[i]!.resolve(inserted));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(storageError(err, this.location));
      // One request's failure (its row did not fit, say) must not fail its neighbours: alone, each
      // either commits or gets its own typed error. Nothing of the failed batch was written.
      for (const item of batch) {
        await insert([item]).then(
          ([inserted]) => item.resolve(inserted!),
          (e: unknown) => item.reject(storageError(e, this.location)),
        );
      }
    } finally {
      this.mutex.unlock();
    }
  }

  /**
   * A read outside any transaction: at once while no write holds the connection (a write between two
   * of its awaits would show its uncommitted rows), else after it. Every statement of this store runs
   * when it is called, so a read begun while the connection is free finishes before anything else.
   */
  async read<T>(body: (ops: StoreOps) => Awaitable<T>): Promise<T> {
    if (!this.mutex.locked) return this.guarded(body);
    await this.mutex.lock();
    try {
      return await this.guarded(body);
    } finally {
      this.mutex.unlock();
    }
  }

  private async guarded<T>(body: (ops: StoreOps) => Awaitable<T>): Promise<T> {
    try {
      return await body(this.ops);
    } catch (err) {
      throw storageError(err, this.location);
    }
  }

  async compact(): Promise<void> {
    // Hand the freed pages back to the filesystem, so the file tracks what is kept, not its peak.
    await this.read(() => this.db.pragma('incremental_vacuum'));
  }

  async ping(): Promise<void> {
    await this.read(() => this.tx.ping.get());
  }

  async close(): Promise<void> {
    // Batches already queued for this tick commit first (setImmediate callbacks run in order).
    await new Promise((resolve) => setImmediate(resolve));
    if (!this.db.open) return;
    await this.mutex.lock();
    await this.events.close(this.db);
    this.db.close();
    this.mutex.unlock();
  }
}

async function openDatabase(opts: SqliteStoreOptions, migrateIt: boolean): Promise<Database.Database> {
  const { path } = opts;
  let db: Database.Database | undefined;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, { timeout: opts.busyTimeoutMs ?? 5000 });
    // auto_vacuum can only be chosen while the file is empty, before WAL mode writes its first page:
    // new files get the mode that lets a sweep give freed pages back (no-op on an existing file).
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    // Truncate the WAL after a checkpoint, so a burst of writes does not leave a large file behind.
    db.pragma('journal_size_limit = 67108864');
    // Up to 32 MiB of pages (taken only as they are read): the key lookups of a large ledger's working
    // set then stay in memory instead of going back to the file system each time.
    db.pragma('cache_size = -32768');
    if (migrateIt) {
      // better-sqlite3 turns foreign keys on by default: off while tables are rebuilt (a dropped table
      // would cascade its deletes, as SQLite's documented way to rebuild a table warns), then on for good.
      db.pragma('foreign_keys = OFF');
      await migrate('sqlite', path, (body) => migrationStep(db!, body));
      db.pragma('foreign_keys = ON');
    }
    if (opts.maxPageCount !== undefined) db.pragma(`max_page_count = ${Math.floor(opts.maxPageCount)}`);
    return db;
  } catch (err) {
    db?.close();
    throw storageError(err, path);
  }
}

/** One migration in a write transaction: checked again inside the lock, since several processes may open a new file at once. */
async function migrationStep(db: Database.Database, body: Parameters<Parameters<typeof migrate>[2]>[0]): Promise<void> {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`,
    );
    await body({
      exec: (sql) => void db.exec(sql),
      versions: () => db.prepare<[], number>('SELECT version FROM schema_migrations').pluck().all(),
      record: (version, name) =>
        void db
          .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
          .run(version, name, Date.now()),
    });
    const broken = db.pragma('foreign_key_check') as unknown[];
    if (broken.length > 0) throw new InternalError(`a migration left ${broken.length} dangling references`);
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

/** The embedded ledger: the one Ledger over a SQLite store. */
export async function openSqliteLedger(opts: SqliteStoreOptions & LedgerOptions): Promise<Ledger> {
  return new Ledger(await SqliteStore.open(opts), opts);
}

/**
 * One mutex for every connection of this process to a file: a write on one while a transaction of
 * another is open between two of its awaits would wait, on this very thread, for a lock that
 * transaction can then never release (the events connection and the runs one, or two ledgers).
 */
const mutexes = new Map<string, ConnectionMutex>();
function mutexOf(path: string): ConnectionMutex {
  if (path === ':memory:') return new ConnectionMutex();
  const file = resolve(path);
  let mutex = mutexes.get(file);
  if (mutex === undefined) mutexes.set(file, (mutex = new ConnectionMutex()));
  return mutex;
}

/** Runs a synchronous body and turns any SQLite or filesystem failure into a typed error. */
function guard<T>(location: string, body: () => T): T {
  try {
    return body();
  } catch (err) {
    throw storageError(err, location);
  }
}
