// The embedded store: one SQLite file (WAL, synchronous=FULL) that several processes may share.
// better-sqlite3 is synchronous; it gets the async face the Ledger is written against as Kysely's
// SQLite driver gives it one: a mutex per connection, BEGIN IMMEDIATE and COMMIT around an async body
// whose awaits all resolve at once (every primitive here returns its value, not a promise), so one
// code path serves this store and PostgreSQL's. Its capabilities: reads cost microseconds, a change
// epoch from PRAGMA data_version (the replay fast path), and group commit of fenced inserts.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { InternalError } from '../../errors.js';
import { Ledger, type LedgerOptions } from '../ledger.js';
import { migrate } from '../migrations.js';
import { LIVE_PHASES, type Phase, sqlPhaseList, TERMINAL_PHASES } from '../phases.js';
import type { CheckedListQuery } from '../rules.js';
import type { AssetRow, Awaitable, ChargeRow, LedgerStore, RunKey, RunRecord, StoreOps, StoredRun, UsageRows } from '../store.js';
import type { AssetRef, Executor, JsonObject, RecoveryPoints, StoredAsset } from '../types.js';
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

const LIVE = `phase IN (${sqlPhaseList(LIVE_PHASES)})`;
const TERMINAL = `phase IN (${sqlPhaseList(TERMINAL_PHASES)})`;
/** What changes over a run's life, in the order records are read and written. */
const STATE = 'phase, progress, composing_at, rendering_at, ended_at, error, attempts, stalls, lease_owner, lease_expires_at, updated_at, deleted_at';
/** What the fence reads for a key: the caller knows the key itself. */
const KEYED = `id, fingerprint, cost, created_at, ${STATE}`;
const RUN = `${KEYED}, tenant, executor, tool, idem_key, args`;

type Raw = unknown[];

/**
 * A record from a raw row (an array: better-sqlite3 builds one much faster than a named row) in the
 * order of KEYED, then the key's columns and the arguments when they were selected.
 */
function recordOf(v: Raw, key?: RunKey): RunRecord {
  const error = v[9] as string | null;
  return {
    id: v[0] as string,
    tenant: key?.tenant ?? (v[16] as string),
    executor: key?.executor ?? (v[17] as Executor),
    tool: key?.tool ?? (v[18] as string),
    idempotencyKey: key?.idempotencyKey ?? (v[19] as string),
    fingerprint: v[1] as string,
    cost: v[2] as number,
    createdAt: v[3] as number,
    phase: v[4] as Phase,
    progress: v[5] as number,
    composingAt: v[6] as number | null,
    renderingAt: v[7] as number | null,
    endedAt: v[8] as number | null,
    error: error === null ? null : JSON.parse(error),
    attempts: v[10] as number,
    stalls: v[11] as number,
    leaseOwner: v[12] as string | null,
    leaseExpiresAt: v[13] as number | null,
    updatedAt: v[14] as number,
    deletedAt: v[15] as number | null,
  };
}

const storedRun = (v: Raw): StoredRun => ({ ...recordOf(v), args: JSON.parse(v[20] as string) as JsonObject });
const parseJson = (text: string | null | undefined): JsonObject | null => (text == null ? null : (JSON.parse(text) as JsonObject));

/** The primitives over prepared statements, each run to completion at once. */
class SqliteOps implements StoreOps {
  private readonly claimStatements = new Map<string, Database.Statement<unknown[], Raw>>();
  private readonly s;

  constructor(private readonly db: Database.Database) {
    const raw = <P extends unknown[]>(sql: string) => db.prepare<P, Raw>(sql).raw(true);
    this.s = {
      keyed: raw<[string, string, string, string]>(`SELECT ${KEYED} FROM runs WHERE tenant = ? AND executor = ? AND tool = ? AND idem_key = ?`),
      byId: raw<[string]>(`SELECT ${RUN} FROM runs WHERE id = ?`),
      insert: db.prepare<unknown[]>(
        `INSERT INTO runs (id, tenant, executor, tool, idem_key, fingerprint, cost, args, created_at, ${STATE})
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant, executor, tool, idem_key) DO NOTHING`,
      ),
      write: db.prepare<unknown[]>(`UPDATE runs SET (${STATE}) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id = ?`),
      args: db.prepare<[string], string>(`SELECT args FROM runs WHERE id = ?`).pluck(),
      result: db.prepare<[string], Buffer | null>(`SELECT result FROM run_data WHERE run_id = ?`).pluck(),
      recovery: db.prepare<[string], string | null>(`SELECT recovery FROM run_data WHERE run_id = ?`).pluck(),
      putRecovery: db.prepare<[string, string]>(
        `INSERT INTO run_data (run_id, recovery) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET recovery = excluded.recovery`,
      ),
      dropRecovery: db.prepare<[string]>(`UPDATE run_data SET recovery = NULL WHERE run_id = ?`),
      putResult: db.prepare<[string, Buffer]>(
        `INSERT INTO run_data (run_id, result) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET result = excluded.result, recovery = NULL`,
      ),
      charge: db.prepare<[string, string, string, number, string | null, string | null, number]>(
        `INSERT INTO charges (run_id, tenant, tool, credits, provider, model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      putAsset: db.prepare<[string, string, number, Uint8Array, number]>(
        `INSERT INTO assets (sha256, mime, size, bytes, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      attach: db.prepare<[string, number, string, string]>(
        `INSERT INTO run_assets (run_id, n, sha256, meta) VALUES (?, ?, ?, ?)
         ON CONFLICT (run_id, n) DO UPDATE SET sha256 = excluded.sha256, meta = excluded.meta`,
      ),
      assets: db.prepare<[string], { n: number; sha256: string; mime: string; size: number; meta: string }>(
        `SELECT ra.n, ra.sha256, a.mime, a.size, ra.meta FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = ? ORDER BY ra.n`,
      ),
      assetBytes: db.prepare<[string, number], StoredAsset>(
        `SELECT a.sha256, a.mime, a.bytes FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = ? AND ra.n = ?`,
      ),
      clearArgs: db.prepare<[string]>(`UPDATE runs SET args = '{}' WHERE id = ?`),
      clearData: db.prepare<[string]>(`DELETE FROM run_data WHERE run_id = ?`),
      detach: db.prepare<[string], string>(`DELETE FROM run_assets WHERE run_id = ? RETURNING sha256`).pluck(),
      deleteRun: db.prepare<[string]>(`DELETE FROM runs WHERE id = ?`),
      dropOrphans: db.prepare<[string]>(
        `DELETE FROM assets WHERE sha256 IN (SELECT value FROM json_each(?))
           AND NOT EXISTS (SELECT 1 FROM run_assets ra WHERE ra.sha256 = assets.sha256)`,
      ),
      runsByTool: db.prepare<[string], UsageRows['runs'][number]>(
        `SELECT r.tool, COUNT(*) AS runs, COALESCE(SUM(rr.count), 0) AS replays
         FROM runs r LEFT JOIN run_replays rr ON rr.run_id = r.id WHERE r.tenant = ? GROUP BY r.tool`,
      ),
      charges: db.prepare<[string], UsageRows['charges'][number]>(
        `SELECT tool, COALESCE(provider, 'unknown') AS provider, COUNT(*) AS charges, COALESCE(SUM(credits), 0) AS credits
         FROM charges WHERE tenant = ? GROUP BY 1, 2`,
      ),
      expired: db.prepare<[number, number], string>(`SELECT id FROM runs WHERE created_at <= ? AND (${TERMINAL} OR deleted_at IS NOT NULL) LIMIT ?`).pluck(),
      held: db.prepare<[number], { id: string; owner: string }>(
        `SELECT id, lease_owner AS owner FROM runs WHERE ${LIVE} AND lease_owner IS NOT NULL AND lease_expires_at > ?`,
      ),
      // A run forgotten since its replays were counted takes its count with it.
      addReplays: db.prepare<[string, number, string]>(
        `INSERT INTO run_replays (run_id, count) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?)
         ON CONFLICT (run_id) DO UPDATE SET count = count + excluded.count`,
      ),
    };
  }

  runByKey(key: RunKey): RunRecord | undefined {
    const row = this.s.keyed.get(key.tenant, key.executor, key.tool, key.idempotencyKey);
    return row === undefined ? undefined : recordOf(row, key);
  }

  runById(id: string): StoredRun | undefined {
    const row = this.s.byId.get(id);
    return row === undefined ? undefined : storedRun(row);
  }

  insertRun(r: RunRecord, args: JsonObject): boolean {
    return this.s.insert.run(r.id, r.tenant, r.executor, r.tool, r.idempotencyKey, r.fingerprint, r.cost, JSON.stringify(args), r.createdAt, ...state(r)).changes === 1;
  }

  writeRun(r: RunRecord): void {
    this.s.write.run(...state(r), r.id);
  }

  argsOf(id: string): JsonObject {
    return parseJson(this.s.args.get(id)) ?? {};
  }

  resultOf(id: string): JsonObject | null {
    return unpackResult(this.s.result.get(id));
  }

  recoveryOf(id: string): RecoveryPoints {
    return parseJson(this.s.recovery.get(id)) ?? {};
  }

  putRecovery(id: string, points: RecoveryPoints | null): void {
    if (points === null) this.s.dropRecovery.run(id);
    else this.s.putRecovery.run(id, JSON.stringify(points));
  }

  putResult(id: string, resultJson: string): void {
    this.s.putResult.run(id, packResultJson(resultJson));
  }

  charge(c: ChargeRow): void {
    this.s.charge.run(c.runId, c.tenant, c.tool, c.credits, c.provider, c.model, c.at);
  }

  attachAsset(runId: string, n: number, asset: AssetRow, at: number): void {
    this.s.putAsset.run(asset.sha256, asset.mime, asset.bytes.byteLength, asset.bytes, at);
    this.s.attach.run(runId, n, asset.sha256, JSON.stringify(asset.meta));
  }

  assetsOf(runId: string): AssetRef[] {
    return this.s.assets.all(runId).map((a) => ({ ...a, meta: JSON.parse(a.meta) as JsonObject }));
  }

  assetBytes(runId: string, n: number): StoredAsset | undefined {
    return this.s.assetBytes.get(runId, n);
  }

  clearRun(id: string): string[] {
    this.s.clearArgs.run(id);
    this.s.clearData.run(id);
    return this.s.detach.all(id);
  }

  deleteRuns(ids: readonly string[]): string[] {
    return ids.flatMap((id) => {
      const unlinked = this.s.detach.all(id);
      this.s.deleteRun.run(id);
      return unlinked;
    });
  }

  dropOrphanAssets(sha256s: readonly string[]): number {
    return sha256s.length === 0 ? 0 : this.s.dropOrphans.run(JSON.stringify([...new Set(sha256s)])).changes;
  }

  nextClaimable(now: number, executor: Executor, tools: readonly string[] | undefined): StoredRun | undefined {
    const names = tools === undefined ? '*' : tools.join('\u0000');
    let statement = this.claimStatements.get(names);
    if (statement === undefined) {
      const only = tools === undefined ? '' : `AND tool IN (${tools.map(() => '?').join(', ')})`;
      statement = this.db
        .prepare<unknown[], Raw>(
          `SELECT ${RUN} FROM runs WHERE ${LIVE} AND executor = ? AND (lease_expires_at IS NULL OR lease_expires_at <= ?) ${only}
           ORDER BY created_at, id LIMIT 1`,
        )
        .raw(true);
      this.claimStatements.set(names, statement);
    }
    const row = statement.get(executor, now, ...(tools ?? []));
    return row === undefined ? undefined : storedRun(row);
  }

  page(tenant: string, q: CheckedListQuery): StoredRun[] {
    const where = ['tenant = ?', 'deleted_at IS NULL'];
    const params: unknown[] = [tenant];
    if (q.tool !== undefined) {
      where.push('tool = ?');
      params.push(q.tool);
    }
    if (q.phase !== undefined) {
      where.push('phase = ?');
      params.push(q.phase);
    }
    if (q.before !== undefined) {
      where.push('(created_at < ? OR (created_at = ? AND id < ?))');
      params.push(q.before.createdAt, q.before.createdAt, q.before.id);
    }
    const sql = `SELECT ${RUN} FROM runs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`;
    return this.db.prepare<unknown[], Raw>(sql).raw(true).all(...params, q.limit + 1).map(storedRun);
  }

  usageRows(tenant: string): UsageRows {
    return { runs: this.s.runsByTool.all(tenant), charges: this.s.charges.all(tenant) };
  }

  expiredIds(cutoff: number, limit: number): string[] {
    return this.s.expired.all(cutoff, limit);
  }

  heldRuns(now: number): { id: string; owner: string }[] {
    return this.s.held.all(now);
  }

  addReplays(counts: readonly (readonly [string, number])[]): void {
    for (const [id, count] of counts) this.s.addReplays.run(id, count, id);
  }
}

function state(r: RunRecord): unknown[] {
  const error = r.error === null ? null : JSON.stringify(r.error);
  return [r.phase, r.progress, r.composingAt, r.renderingAt, r.endedAt, error, r.attempts, r.stalls, r.leaseOwner, r.leaseExpiresAt, r.updatedAt, r.deletedAt];
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
  private readonly mutex = new ConnectionMutex();
  private readonly ops: SqliteOps;
  private readonly tx;
  private readonly inserts = new TickBatch<PendingInsert>((batch) => void this.commitInserts(batch));
  private epoch = 0;
  private seen: [dataVersion: number, ownChanges: number] = [-1, -1];

  private constructor(
    private readonly db: Database.Database,
    eventsDb: Database.Database,
    private readonly synchronous: 'FULL' | 'NORMAL',
  ) {
    this.location = db.name;
    this.ops = this.guard(() => new SqliteOps(db));
    // One mutex for both connections: a write on the events connection while a runs transaction of
    // this process is open between two of its awaits would wait on this very thread for the file's lock.
    this.events = new SqliteEvents(eventsDb, this.mutex);
    this.tx = this.guard(() => ({
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      // Two statements, not one query of pragma_data_version: that table compiles a PRAGMA on every read.
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
      ownChanges: db.prepare<[], number>('SELECT total_changes()').pluck(),
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
      const dataVersion = this.tx.dataVersion.get()!;
      const ownChanges = this.tx.ownChanges.get()!;
      if (dataVersion !== this.seen[0] || ownChanges !== this.seen[1]) {
        this.seen = [dataVersion, ownChanges];
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
      this.tx.begin.run();
      const result = await body(this.ops);
      this.tx.commit.run();
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.tx.rollback.run();
      throw storageError(err, this.location);
    } finally {
      if (relaxed) this.db.pragma(`synchronous = ${this.synchronous}`);
      this.mutex.unlock();
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
    await this.mutex.lock();
    const alone = (items: PendingInsert[]) => {
      this.tx.begin.run();
      try {
        const inserted = items.map((item) => this.ops.insertRun(item.run, item.args));
        this.tx.commit.run();
        return inserted;
      } catch (err) {
        if (this.db.inTransaction) this.tx.rollback.run();
        throw err;
      }
    };
    try {
      alone(batch).forEach((inserted, i) => batch[i]!.resolve(inserted));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(storageError(err, this.location));
      // One request's failure (its row did not fit, say) must not fail its neighbours: alone, each
      // either commits or gets its own typed error. Nothing of the failed batch was written.
      for (const item of batch) {
        try {
          item.resolve(alone([item])[0]!);
        } catch (e) {
          item.reject(storageError(e, this.location));
        }
      }
    } finally {
      this.mutex.unlock();
    }
  }

  read<T>(body: (ops: StoreOps) => Awaitable<T>): Awaitable<T> {
    // Every primitive here answers at once: the body's value is never a promise.
    return this.readNow(() => body(this.ops) as T);
  }

  async compact(): Promise<void> {
    // Hand the freed pages back to the filesystem, so the file tracks what is kept, not its peak.
    await this.readNow(() => this.db.pragma('incremental_vacuum'));
  }

  async ping(): Promise<void> {
    await this.readNow(() => this.tx.ping.get());
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

  /**
   * A read outside any transaction: at once while no write holds the connection (a write between two
   * of its awaits would show its uncommitted rows), else after it.
   */
  private readNow<T>(body: () => T): T | Promise<T> {
    if (!this.mutex.locked) return this.guard(body);
    return this.mutex.lock().then(() => {
      try {
        return this.guard(body);
      } finally {
        this.mutex.unlock();
      }
    });
  }

  /** Runs a synchronous body and turns any SQLite or filesystem failure into a typed error. */
  private guard<T>(body: () => T): T {
    try {
      return body();
    } catch (err) {
      throw storageError(err, this.location);
    }
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
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`);
    await body({
      exec: (sql) => void db.exec(sql),
      versions: () => db.prepare<[], number>('SELECT version FROM schema_migrations').pluck().all(),
      record: (version, name) => void db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(version, name, Date.now()),
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
