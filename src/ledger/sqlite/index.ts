// The embedded ledger: one SQLite file (WAL, synchronous=FULL) that several processes may share.
// It only does I/O: every decision is a function of ../rules.ts. better-sqlite3 is synchronous; each
// verb runs to completion inside one transaction, and the async interface only wraps it so every
// backend looks the same to callers.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { BoundedMap } from '../../bounded-map.js';
import { InternalError, RunledgerError, StorageUnavailableError } from '../../errors.js';
import { failpoint } from '../../failpoints.js';
import { ChangeFeed } from '../change-feed.js';
import { assertValidKey, fingerprintedArgs } from '../fingerprint.js';
import { isTerminal, LIVE_PHASES, Phase, sqlPhaseList, TERMINAL_PHASES } from '../phases.js';
import { ReplayCounter } from '../replay-counter.js';
import {
  cancelDecision,
  checkCreate,
  checkListQuery,
  claimUpdate,
  isClaimable,
  conflictOf,
  DEFAULT_LEASE_MS,
  DEFAULT_RETENTION_MS,
  assetNotFound,
  deletedRunError,
  EVENT_RETENTION_MS,
  holdsLease,
  isExpired,
  judgeExisting,
  KEYED_COLUMNS,
  KEYED_NAMES,
  keyNotFound,
  newRunRow,
  nextRunState,
  pageOf,
  RUN_COLUMNS,
  TAKEOVER_AT_SQL,
  toClaimedRun,
  toRun,
  visibleRow,
  type KeyedRow,
  type RunRow,
} from '../rules.js';
import type {
  AssetRef,
  CancelOutcome,
  ChargeSource,
  ClaimedRun,
  Conflict,
  CreateOutcome,
  CreatePreview,
  CreateRequest,
  JsonObject,
  ListQuery,
  NewAsset,
  Run,
  RunChange,
  RunError,
  RunLedger,
  RunPage,
  StoredAsset,
  StoredEvent,
  SweepReport,
  Usage,
} from '../types.js';
import { storageError } from './errors.js';
import { packResultJson, unpackResult } from './result-codec.js';
import { sqliteMigrations } from './migrations.js';

export interface SqliteLedgerOptions {
  /** File path, or ':memory:'. */
  path: string;
  /** Milliseconds since the epoch; tests pass a fake clock. */
  clock?: () => number;
  leaseMs?: number;
  retentionMs?: number;
  busyTimeoutMs?: number;
  /** FULL (default) makes an acknowledged key survive power loss. */
  synchronous?: 'FULL' | 'NORMAL';
  /** Caps the file size in pages: how tests simulate a full disk. */
  maxPageCount?: number;
  /** How often replay counts are written back (they are batched off the replay path). */
  replayFlushMs?: number;
}

type Replayed = Extract<CreateOutcome, { kind: 'replayed' }>;

interface KnownReplay {
  dataVersion: number;
  ownChanges: number;
  raw: unknown[];
  row: KeyedRow;
  run: Run;
}

interface PendingCreate {
  req: CreateRequest;
  fp: string;
  resolve(outcome: CreateOutcome): void;
  reject(err: unknown): void;
}

interface PendingEvent {
  scope: string;
  streamId: string;
  message: string;
  resolve(id: string): void;
  reject(err: unknown): void;
}

/**
 * Group commit without making anyone wait for it: the first item of a tick is handed over at once,
 * alone; items that arrive while the rest of that tick runs are collected and handed over together
 * when it ends. A lone caller is never delayed; a burst shares one transaction (one fsync).
 */
class TickBatch<T> {
  private items: T[] | null = null;
  constructor(private readonly flush: (items: T[]) => void) {}
  add(item: T): void {
    if (this.items !== null) {
      this.items.push(item);
      return;
    }
    this.items = [];
    setImmediate(() => {
      const items = this.items!;
      this.items = null;
      if (items.length > 0) this.flush(items);
    });
    this.flush([item]);
  }
}

interface AssetRow {
  n: number;
  sha256: string;
  mime: string;
  size: number;
  meta: string;
}

const LIVE = `phase IN (${sqlPhaseList(LIVE_PHASES)})`;
const TERMINAL = `phase IN (${sqlPhaseList(TERMINAL_PHASES)})`;
/** Sweeps delete in slices, so a large sweep never holds the write lock for long. */
const SWEEP_SLICE = 500;

/**
 * The fence's read as a row. It is fetched raw (an array), which better-sqlite3 builds much faster than
 * a named row, and which the replay cache compares value by value.
 */
function keyedRow(values: unknown[] | undefined): KeyedRow | undefined {
  if (values === undefined) return undefined;
  const row: Record<string, unknown> = {};
  KEYED_NAMES.forEach((name, i) => (row[name] = values[i]));
  return row as unknown as KeyedRow;
}

function toAssetRef(row: AssetRow): AssetRef {
  return { n: row.n, sha256: row.sha256, mime: row.mime, size: row.size, meta: JSON.parse(row.meta) as JsonObject };
}

const parseJson = <T = JsonObject>(text: string | null | undefined): T | null => (text == null ? null : (JSON.parse(text) as T));

/** Whether two raw rows (arrays) hold the same values: a run unchanged since it was last built. */
function sameValues(a: readonly unknown[], b: readonly unknown[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class SqliteLedger implements RunLedger {
  readonly path: string;
  readonly leaseMs: number;
  private readonly db: Database.Database;
  /**
   * Stream events are written on their own connection with synchronous=NORMAL: they must survive a
   * process restart (WAL gives that) but not power loss, and an fsync per SSE message would halve
   * HTTP throughput. Runs, keys and charges stay on the FULL connection.
   */
  private readonly eventsDb: Database.Database;
  private readonly now: () => number;
  private readonly retentionMs: number;
  private readonly replays: ReplayCounter;
  private readonly changes = new ChangeFeed();
  /** A done run's result never changes, so a replay of a finished run need not read and inflate it again. */
  private readonly finishedResults = new BoundedMap<string, JsonObject>(4096);
  private readonly claimStatements = new Map<string, Database.Statement<unknown[], RunRow>>();
  /**
   * The run each replayed key was last answered with, beside the raw row it was built from and the
   * database version it was read at. While no connection has committed anything since, a replay
   * need not read at all (PRAGMA data_version sees other connections' commits, total_changes() this
   * one's); while the row reads back the same, it reuses the same Run (and the views cache by it).
   */
  private readonly replayed = new BoundedMap<string, KnownReplay>(4096);
  private readonly creates = new TickBatch<PendingCreate>((batch) => this.commitCreates(batch));
  private readonly events = new TickBatch<PendingEvent>((batch) => this.commitEvents(batch));
  private readonly stmt;
  /** The fenced creates of one tick, in one write transaction; built once. */
  private readonly fenceBatch: Database.Transaction<(items: PendingCreate[]) => (CreateOutcome | RunledgerError)[]>;
  /** A leased run's move to its next phase, if this owner still holds it; built once. */
  private readonly heldMove: Database.Transaction<(runId: string, owner: string, to: Phase, data: TransitionData) => Run | null>;
  /** How the runs connection commits (see SqliteLedgerOptions.synchronous). */
  private readonly synchronous: 'FULL' | 'NORMAL';

  constructor(opts: SqliteLedgerOptions) {
    this.path = opts.path;
    this.now = opts.clock ?? Date.now;
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.synchronous = opts.synchronous ?? 'FULL';
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.db = openDatabase(opts);
    this.eventsDb = opts.path === ':memory:' ? this.db : openDatabase({ ...opts, synchronous: 'NORMAL' });
    const db = this.db;
    const events = this.eventsDb;
    this.stmt = this.guard(() => ({
      keyed: db
        .prepare<[string, string, string], unknown[]>(
          `SELECT ${KEYED_COLUMNS} FROM runs WHERE tenant = ? AND tool = ? AND idem_key = ?`,
        )
        .raw(true),
      byKey: db.prepare<[string, string, string], RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE tenant = ? AND tool = ? AND idem_key = ?`),
      byId: db.prepare<[string], RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`),
      args: db.prepare<[string], string>(`SELECT args FROM runs WHERE id = ?`).pluck(),
      result: db.prepare<[string], Buffer | null>(`SELECT result FROM run_data WHERE run_id = ?`).pluck(),
      recovery: db.prepare<[string], string | null>(`SELECT recovery FROM run_data WHERE run_id = ?`).pluck(),
      insert: db.prepare<unknown[]>(
        `INSERT INTO runs (id, tenant, tool, idem_key, fingerprint, cost, args, phase, created_at, updated_at,
           attempts, lease_owner, lease_expires_at, claimed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant, tool, idem_key) DO NOTHING`,
      ),
      deleteRun: db.prepare<[string]>(`DELETE FROM runs WHERE id = ?`),
      lease: db.prepare<[string, number, number, number, number, number, string]>(
        `UPDATE runs SET lease_owner = ?, lease_expires_at = ?, claimed_at = ?, attempts = ?, stalls = ?, stall_backoff_ms = ?
         WHERE id = ?`,
      ),
      abandon: db.prepare<[number, string, string]>(`UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND ${LIVE}`),
      renew: db.prepare<[number, string, string]>(`UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND ${LIVE}`),
      release: db.prepare<[string, string]>(`UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?`),
      transition: db.prepare<[Phase, number, number | null, number | null, number | null, string | null, number | null, number, number, number, string]>(
        `UPDATE runs SET phase = ?, progress = ?, composing_at = ?, rendering_at = ?, ended_at = ?, error = ?,
           lease_expires_at = ?, lease_owner = CASE WHEN ? THEN lease_owner ELSE NULL END, progressed_at = ?, updated_at = ?
         WHERE id = ?`,
      ),
      setRecovery: db.prepare<[string, string | null]>(
        `INSERT INTO run_data (run_id, recovery) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET recovery = excluded.recovery`,
      ),
      setResult: db.prepare<[string, Buffer]>(
        `INSERT INTO run_data (run_id, result) VALUES (?, ?)
         ON CONFLICT (run_id) DO UPDATE SET result = excluded.result, recovery = NULL`,
      ),
      dropRecovery: db.prepare<[string]>(`UPDATE run_data SET recovery = NULL WHERE run_id = ?`),
      touch: db.prepare<[number, number, number, number, string]>(
        `UPDATE runs SET progress = max(progress, ?), lease_expires_at = ?, progressed_at = ?, updated_at = ? WHERE id = ?`,
      ),
      progressed: db.prepare<[number, number, string]>(`UPDATE runs SET lease_expires_at = ?, progressed_at = ? WHERE id = ?`),
      putAsset: db.prepare<[string, string, number, Uint8Array, number]>(
        `INSERT INTO assets (sha256, mime, size, bytes, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      attach: db.prepare<[string, number, string, string]>(
        `INSERT INTO run_assets (run_id, n, sha256, meta) VALUES (?, ?, ?, ?)
         ON CONFLICT (run_id, n) DO UPDATE SET sha256 = excluded.sha256, meta = excluded.meta`,
      ),
      runAssets: db.prepare<[string], AssetRow>(
        `SELECT ra.n, ra.sha256, a.mime, a.size, ra.meta FROM run_assets ra JOIN assets a USING (sha256)
         WHERE ra.run_id = ? ORDER BY ra.n`,
      ),
      assetBytes: db.prepare<[string, number], { sha256: string; mime: string; bytes: Buffer }>(
        `SELECT a.sha256, a.mime, a.bytes FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = ? AND ra.n = ?`,
      ),
      detachAll: db.prepare<[string]>(`DELETE FROM run_assets WHERE run_id = ?`),
      dropOrphanAssets: db.prepare(
        `DELETE FROM assets WHERE NOT EXISTS (SELECT 1 FROM run_assets ra WHERE ra.sha256 = assets.sha256)`,
      ),
      charge: db.prepare<[string, string, string, number, string | null, string | null, number]>(
        `INSERT INTO charges (run_id, tenant, tool, credits, provider, model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING`,
      ),
      tombstone: db.prepare<[number, number, string]>(
        `UPDATE runs SET deleted_at = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?`,
      ),
      clearData: db.prepare<[string]>(`DELETE FROM run_data WHERE run_id = ?`),
      clearArgs: db.prepare<[string]>(`UPDATE runs SET args = '{}' WHERE id = ?`),
      // A run forgotten since its replays were counted takes its count with it.
      addReplays: db.prepare<[string, number, string]>(
        `INSERT INTO run_replays (run_id, count) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?)
         ON CONFLICT (run_id) DO UPDATE SET count = count + excluded.count`,
      ),
      runsByTool: db.prepare<[string], { tool: string; runs: number; replays: number }>(
        `SELECT r.tool, COUNT(*) AS runs, COALESCE(SUM(rr.count), 0) AS replays
         FROM runs r LEFT JOIN run_replays rr ON rr.run_id = r.id WHERE r.tenant = ? GROUP BY r.tool`,
      ),
      chargesByTool: db.prepare<[string], { tool: string; charges: number; credits: number }>(
        `SELECT tool, COUNT(*) AS charges, COALESCE(SUM(credits), 0) AS credits FROM charges WHERE tenant = ? GROUP BY tool`,
      ),
      chargesByProvider: db.prepare<[string], { provider: string; charges: number; credits: number }>(
        `SELECT COALESCE(provider, 'unknown') AS provider, COUNT(*) AS charges, COALESCE(SUM(credits), 0) AS credits
         FROM charges WHERE tenant = ? GROUP BY 1`,
      ),
      insertEvent: events.prepare<[string, string, string, number]>(
        `INSERT INTO events (session_id, stream_id, message, created_at) VALUES (?, ?, ?, ?)`,
      ),
      eventStream: events.prepare<[number, string], { stream_id: string }>(`SELECT stream_id FROM events WHERE id = ? AND session_id = ?`),
      eventsAfter: events.prepare<[string, string, number], { id: number; stream_id: string; message: string }>(
        `SELECT id, stream_id, message FROM events WHERE session_id = ? AND stream_id = ? AND id > ? ORDER BY id`,
      ),
      dropOldEvents: db.prepare<[number]>(`DELETE FROM events WHERE created_at <= ?`),
      ping: db.prepare(`SELECT 1`).pluck(),
      // Two statements, not one query of pragma_data_version: that table compiles a PRAGMA on every read.
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
      ownChanges: db.prepare<[], number>('SELECT total_changes()').pluck(),
      expired: db.prepare<[number, number], string>(
        `SELECT id FROM runs WHERE created_at <= ? AND (${TERMINAL} OR deleted_at IS NOT NULL) LIMIT ?`,
      ).pluck(),
    }));
    this.fenceBatch = db.transaction((items: PendingCreate[]) =>
      items.map((item) => {
        try {
          return this.insertOrReplay(item.req, item.fp);
        } catch (err) {
          // A typed refusal (a deleted key) is this caller's answer, not the batch's failure.
          if (err instanceof RunledgerError) return err;
          throw err;
        }
      }),
    );
    this.heldMove = db.transaction((runId: string, owner: string, to: Phase, data: TransitionData) => {
      const row = this.stmt.byId.get(runId);
      return holdsLease(row, owner) ? this.transition(row!, to, data) : null;
    });
    this.replays = new ReplayCounter((counts) => {
      if (!this.db.open) return;
      this.db.transaction(() => {
        for (const [id, count] of counts) this.stmt.addReplays.run(id, count, id);
      })();
    }, opts.replayFlushMs ?? 1000);
  }

  describe(): string {
    return this.path;
  }

  subscribe(listener: (change: RunChange) => void): () => void {
    return this.changes.subscribe(listener);
  }

  // ---- the fence -------------------------------------------------------------------------

  async createOrReplay(req: CreateRequest): Promise<CreateOutcome> {
    const fp = this.guard(() => checkCreate(req));
    // Fast path: a repeat needs no write lock. It decides nothing on its own: a miss still goes
    // through the fenced insert, which is what makes one run per key.
    const fenceKey = `${req.tenant}\u0000${req.tool}\u0000${req.idempotencyKey}`;
    const known = this.replayed.get(fenceKey);
    // Only a key replayed before is worth the version read, taken before the row's so that a change
    // committed in between shows as a newer version next time. A fresh create never pays it.
    const version = known === undefined ? null : this.guard(() => [this.stmt.dataVersion.get()!, this.stmt.ownChanges.get()!] as const);
    if (known !== undefined && version !== null && known.dataVersion === version[0] && known.ownChanges === version[1]) {
      // Nothing was committed since the row was read, by this connection or any other: it is as read.
      if (known.run.fingerprint === fp && !isExpired(known.row, this.now(), this.retentionMs)) return this.replayOf(known.run);
    }
    const raw = this.guard(() => this.stmt.keyed.get(req.tenant, req.tool, req.idempotencyKey));
    const seen = keyedRow(raw);
    if (seen === undefined || isExpired(seen, this.now(), this.retentionMs)) {
      return new Promise((resolve, reject) => this.creates.add({ req, fp, resolve, reject }));
    }
    // A first sighting has no version taken before its read: it is remembered, but read again next time.
    const [dataVersion, ownChanges] = version ?? [-1, -1];
    if (known !== undefined && known.run.fingerprint === fp && sameValues(known.raw, raw!)) {
      this.replayed.set(fenceKey, { ...known, dataVersion, ownChanges });
      return this.replayOf(known.run);
    }
    const outcome = this.guard(() => this.answerExisting(seen, req, fp));
    if (outcome.kind === 'replayed') this.replayed.set(fenceKey, { dataVersion, ownChanges, raw: raw!, row: seen, run: outcome.run });
    return outcome;
  }

  private replayOf(run: Run): Replayed {
    this.replays.count(run.id);
    return { kind: 'replayed', run };
  }

  /**
   * Group commit: the creates that arrive in one tick are fenced in one transaction, so concurrent
   * callers share one fsync instead of queueing for one each. Every caller still hears back only
   * after the commit that holds its row.
   */
  private commitCreates(batch: PendingCreate[]): void {
    const settle = (item: PendingCreate, outcome: CreateOutcome | RunledgerError) => {
      if (outcome instanceof RunledgerError) {
        item.reject(outcome);
        return;
      }
      if (outcome.kind === 'created') this.changes.emit({ runId: outcome.run.id, phase: Phase.queued });
      item.resolve(outcome);
    };
    try {
      this.fenceBatch.immediate(batch).forEach((outcome, i) => settle(batch[i]!, outcome));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(storageError(err, this.path));
        return;
      }
      // One request's failure (its row did not fit, say) must not fail its neighbours: alone, each
      // either commits or gets its own typed error. Nothing of the failed batch was written.
      for (const item of batch) {
        try {
          settle(item, this.fenceBatch.immediate([item])[0]!);
        } catch (e) {
          item.reject(storageError(e, this.path));
        }
      }
    }
  }

  async preview(req: CreateRequest): Promise<CreatePreview> {
    return this.guard(() => {
      const fp = checkCreate(req);
      const seen = keyedRow(this.stmt.keyed.get(req.tenant, req.tool, req.idempotencyKey));
      if (seen === undefined || isExpired(seen, this.now(), this.retentionMs)) return { kind: 'create', fingerprint: fp };
      const outcome = this.answerExisting(seen, req, fp, false);
      return outcome.kind === 'replayed' ? { kind: 'replay', run: outcome.run } : outcome;
    });
  }

  /** Inside the write transaction: the fenced insert, or the answer the key's holder gives. */
  private insertOrReplay(req: CreateRequest, fp: string): CreateOutcome {
    const created = this.insertRun(req, fp);
    if (created !== null) return created;
    const winner = keyedRow(this.stmt.keyed.get(req.tenant, req.tool, req.idempotencyKey));
    if (winner === undefined) throw new InternalError('fenced insert conflicted but no run holds the key');
    if (!isExpired(winner, this.now(), this.retentionMs)) return this.answerExisting(winner, req, fp);
    // The key outlived its retention window before a sweep ran: forget it now, as a sweep would.
    this.forgetRuns([winner.id]);
    const fresh = this.insertRun(req, fp);
    if (fresh === null) throw new InternalError('insert after forgetting an expired key conflicted');
    return fresh;
  }

  private insertRun(req: CreateRequest, fp: string): CreateOutcome | null {
    const row = newRunRow(req, fp, this.now(), this.leaseMs);
    const args = fingerprintedArgs(req.args);
    const { changes } = this.stmt.insert.run(
      row.id, row.tenant, row.tool, row.idem_key, fp, row.cost, JSON.stringify(args), row.phase, row.created_at, row.updated_at,
      row.attempts, row.lease_owner, row.lease_expires_at, row.claimed_at,
    );
    if (changes === 0) return null;
    return { kind: 'created', run: toRun(row, row, { args, result: null }) };
  }

  private answerExisting(row: KeyedRow, req: CreateRequest, fp: string, countReplay = true): Conflict | Replayed {
    switch (judgeExisting(row, fp, this.now(), this.retentionMs)) {
      case 'deleted':
        throw deletedRunError(row.id);
      case 'conflict':
        return conflictOf(row, parseJson(this.stmt.args.get(row.id)) ?? {}, req.args);
      case 'expired':
        throw new InternalError(`run ${row.id} expired while it was being answered`);
      case 'replay':
        if (countReplay) this.replays.count(row.id);
        // Same fingerprint, so the stored arguments equal these: no need to read and parse them.
        return {
          kind: 'replayed',
          run: toRun(row, { tenant: req.tenant, tool: req.tool, idem_key: req.idempotencyKey }, { args: fingerprintedArgs(req.args), result: this.resultOf(row) }),
        };
    }
  }

  /** The result of a run: only a done run has one, and it never changes, so it is read once and remembered. */
  private resultOf(row: Pick<KeyedRow, 'id' | 'phase'>): JsonObject | null {
    if (row.phase !== Phase.done) return null;
    let result = this.finishedResults.get(row.id);
    if (result === undefined) this.finishedResults.set(row.id, (result = unpackResult(this.stmt.result.get(row.id)) ?? {}));
    return result;
  }

  // ---- reading ---------------------------------------------------------------------------

  /** The full run, its arguments and result read from the cold row. */
  private fullRun(row: RunRow): Run {
    return toRun(row, row, { args: parseJson(this.stmt.args.get(row.id)) ?? {}, result: this.resultOf(row) });
  }

  async getRun(tenant: string, runId: string): Promise<Run> {
    return this.guard(() => this.fullRun(this.visible(tenant, runId)));
  }

  async findRun(tenant: string, tool: string, idempotencyKey: string): Promise<Run> {
    return this.guard(() => {
      assertValidKey(idempotencyKey);
      const row = this.stmt.byKey.get(tenant, tool, idempotencyKey);
      if (row === undefined || isExpired(row, this.now(), this.retentionMs)) throw keyNotFound(tool);
      if (row.deleted_at !== null) throw deletedRunError(row.id);
      return this.fullRun(row);
    });
  }

  async listRuns(tenant: string, query: ListQuery = {}): Promise<RunPage> {
    return this.guard(() => {
      const q = checkListQuery(query);
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
      const rows = this.db
        .prepare<unknown[], RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`)
        .all(...params, q.limit + 1);
      const page = pageOf(rows, q.limit);
      return { runs: page.rows.map((row) => this.fullRun(row)), nextCursor: page.nextCursor };
    });
  }

  async listAssets(tenant: string, runId: string): Promise<AssetRef[]> {
    return this.guard(() => {
      this.visible(tenant, runId);
      return this.stmt.runAssets.all(runId).map(toAssetRef);
    });
  }

  async readAsset(tenant: string, runId: string, n: number): Promise<StoredAsset> {
    return this.guard(() => {
      this.visible(tenant, runId);
      const asset = this.stmt.assetBytes.get(runId, n);
      if (asset === undefined) throw assetNotFound(runId, n);
      return asset;
    });
  }

  /** The live (not deleted) run of this tenant; another tenant's run is reported as not found. */
  private visible(tenant: string, runId: string): RunRow {
    return visibleRow(this.stmt.byId.get(runId), tenant, runId);
  }

  // ---- workers ---------------------------------------------------------------------------

  async claim(owner: string, tools?: readonly string[]): Promise<ClaimedRun | null> {
    return this.guard(() =>
      this.db
        .transaction((): ClaimedRun | null => {
          const now = this.now();
          const next = this.nextClaimable(tools).get(now, ...(tools ?? []));
          if (next === undefined) return null;
          const run = this.lease(next, owner, now);
          return toClaimedRun(run, parseJson(this.stmt.recovery.get(next.id)) ?? {}, this.stmt.runAssets.all(next.id).map(toAssetRef));
        })
        .immediate(),
    );
  }

  /** The oldest claimable run of these tools (of any, when not given); one statement per tool set. */
  private nextClaimable(tools: readonly string[] | undefined): Database.Statement<unknown[], RunRow> {
    const names = tools === undefined ? '*' : tools.join('\u0000');
    let statement = this.claimStatements.get(names);
    if (statement === undefined) {
      const only = tools === undefined ? '' : `AND tool IN (${tools.map(() => '?').join(', ')})`;
      statement = this.db.prepare<unknown[], RunRow>(
        `SELECT ${RUN_COLUMNS} FROM runs WHERE ${LIVE} AND (lease_owner IS NULL OR ${TAKEOVER_AT_SQL} <= ?) ${only}
         ORDER BY created_at, id LIMIT 1`,
      );
      this.claimStatements.set(names, statement);
    }
    return statement;
  }

  /** Leases `row` to `owner`. Call inside a transaction. */
  private lease(row: RunRow, owner: string, now: number): Run {
    const claim = claimUpdate(row, owner, now, this.leaseMs);
    this.stmt.lease.run(claim.lease_owner, claim.lease_expires_at, claim.claimed_at, claim.attempts, claim.stalls, claim.stall_backoff_ms, row.id);
    return this.fullRun({ ...row, ...claim });
  }

  async claimRun(runId: string, owner: string): Promise<Run | null> {
    return this.guard(() =>
      this.db
        .transaction((): Run | null => {
          const now = this.now();
          const row = this.stmt.byId.get(runId);
          return row !== undefined && isClaimable(row, now) ? this.lease(row, owner, now) : null;
        })
        .immediate(),
    );
  }

  async forget(runId: string, owner: string): Promise<boolean> {
    return this.guard(() =>
      this.db
        .transaction(() => {
          if (!holdsLease(this.stmt.byId.get(runId), owner)) return false;
          this.forgetRuns([runId]);
          return true;
        })
        .immediate(),
    );
  }

  async renew(runId: string, owner: string): Promise<boolean> {
    return this.guard(() => this.stmt.renew.run(this.now() + this.leaseMs, runId, owner).changes === 1);
  }

  async release(runId: string, owner: string): Promise<void> {
    this.guard(() => this.stmt.release.run(runId, owner));
  }

  async advance(runId: string, owner: string, to: Phase, output?: JsonObject): Promise<Run | null> {
    if (isTerminal(to)) throw new InternalError(`advance cannot end a run (${to}); use finish, fail or cancel`);
    return this.heldTransition(runId, owner, to, { output });
  }

  async checkpoint(runId: string, owner: string, name: string, value: JsonObject): Promise<boolean> {
    return this.guard(() =>
      this.db
        .transaction(() => {
          const row = this.stmt.byId.get(runId);
          if (!holdsLease(row, owner)) return false;
          const recovery = parseJson(this.stmt.recovery.get(runId)) ?? {};
          recovery[name] = value;
          this.stmt.setRecovery.run(runId, JSON.stringify(recovery));
          const now = this.now();
          this.stmt.progressed.run(now + this.leaseMs, now, runId);
          return true;
        })
        .immediate(),
    );
  }

  async attachAsset(runId: string, owner: string, n: number, asset: NewAsset, progress: number): Promise<boolean> {
    const sha256 = createHash('sha256').update(asset.bytes).digest('hex');
    const held = this.guard(() =>
      this.db
        .transaction(() => {
          if (!holdsLease(this.stmt.byId.get(runId), owner)) return false;
          const now = this.now();
          this.stmt.putAsset.run(sha256, asset.mime, asset.bytes.byteLength, asset.bytes, now);
          this.stmt.attach.run(runId, n, sha256, JSON.stringify(asset.meta));
          this.stmt.touch.run(progress, now + this.leaseMs, now, now, runId);
          return true;
        })
        .immediate(),
    );
    if (held) this.changes.emit({ runId, phase: Phase.rendering });
    return held;
  }

  async finish(runId: string, owner: string, result: JsonObject, charge?: ChargeSource, durable = true): Promise<Run | null> {
    return this.heldTransition(runId, owner, Phase.done, { result, charge }, durable);
  }

  async fail(runId: string, owner: string, error: RunError): Promise<Run | null> {
    return this.heldTransition(runId, owner, Phase.failed, { error });
  }

  async abandon(runId: string, owner: string): Promise<void> {
    this.guard(() => this.stmt.abandon.run(this.now(), runId, owner));
  }

  private async heldTransition(runId: string, owner: string, to: Phase, data: TransitionData, durable = true): Promise<Run | null> {
    const run = this.guard(() => {
      if (durable || this.synchronous === 'NORMAL') return this.heldMove.immediate(runId, owner, to, data);
      // In WAL mode, synchronous=NORMAL commits to the log without an fsync. Switched for this one
      // synchronous transaction only, so no other write can slip in under it. (Not a prepared
      // statement: SQLite applies this pragma when it compiles it, not when it runs.)
      this.db.pragma('synchronous = NORMAL');
      try {
        return this.heldMove.immediate(runId, owner, to, data);
      } finally {
        this.db.pragma(`synchronous = ${this.synchronous}`);
      }
    });
    if (run !== null) {
      // Committed: a replay of this run need not read and inflate the result it was just given.
      if (run.result !== null) this.finishedResults.set(runId, run.result);
      this.changes.emit({ runId, phase: run.phase });
    }
    return run;
  }

  /** One forward move, its timestamp, its recovery point and (on done) the charge. Call inside a transaction. */
  private transition(row: RunRow, to: Phase, data: TransitionData): Run {
    const now = this.now();
    const next = nextRunState(row, to, now, this.leaseMs, data.error);
    this.stmt.transition.run(
      next.phase,
      next.progress,
      next.composing_at,
      next.rendering_at,
      next.ended_at,
      next.error,
      next.lease_expires_at,
      next.keepLease ? 1 : 0,
      next.progressed_at,
      next.updated_at,
      row.id,
    );
    let result: JsonObject | null = null;
    if (data.result !== undefined) {
      const json = JSON.stringify(data.result);
      this.stmt.setResult.run(row.id, packResultJson(json));
      // A copy, as a later read would give: the caller keeps its own object.
      result = JSON.parse(json) as JsonObject;
    } else if (next.dropRecovery) {
      this.stmt.dropRecovery.run(row.id);
    } else if (data.output !== undefined) {
      const recovery = parseJson(this.stmt.recovery.get(row.id)) ?? {};
      recovery[row.phase] = data.output;
      this.stmt.setRecovery.run(row.id, JSON.stringify(recovery));
    }
    if (next.charge) {
      this.stmt.charge.run(row.id, row.tenant, row.tool, row.cost, data.charge?.provider ?? null, data.charge?.model ?? null, now);
      failpoint('billing', row.tool);
    }
    // The row as the update above left it, without reading it back.
    const after: RunRow = {
      ...row,
      phase: next.phase,
      progress: next.progress,
      composing_at: next.composing_at,
      rendering_at: next.rendering_at,
      ended_at: next.ended_at,
      error: next.error,
      lease_expires_at: next.lease_expires_at,
      lease_owner: next.keepLease ? row.lease_owner : null,
      progressed_at: next.progressed_at,
      updated_at: next.updated_at,
    };
    return toRun(after, after, { args: parseJson(this.stmt.args.get(row.id)) ?? {}, result });
  }

  // ---- the caller's verbs ----------------------------------------------------------------

  async cancel(tenant: string, runId: string): Promise<{ run: Run; outcome: CancelOutcome }> {
    const answer = this.guard(() =>
      this.db
        .transaction(() => {
          const row = this.visible(tenant, runId);
          const decision = cancelDecision(row.phase);
          if (decision !== 'cancel') return { run: this.fullRun(row), outcome: decision };
          return { run: this.transition(row, Phase.canceled, {}), outcome: 'canceled' as const };
        })
        .immediate(),
    );
    if (answer.outcome === 'canceled') this.changes.emit({ runId, phase: Phase.canceled });
    return answer;
  }

  async deleteRun(tenant: string, runId: string): Promise<void> {
    const phase = this.guard(() =>
      this.db
        .transaction(() => {
          const row = this.visible(tenant, runId);
          const phase = isTerminal(row.phase) ? row.phase : this.transition(row, Phase.canceled, {}).phase;
          const now = this.now();
          this.stmt.tombstone.run(now, now, runId);
          this.stmt.clearArgs.run(runId);
          this.stmt.clearData.run(runId);
          this.stmt.detachAll.run(runId);
          this.stmt.dropOrphanAssets.run();
          return phase;
        })
        .immediate(),
    );
    this.finishedResults.delete(runId);
    this.changes.emit({ runId, phase });
  }

  async usage(tenant: string): Promise<Usage> {
    await this.replays.flush();
    return this.guard(() => {
      const usage: Usage = { tenant, runs: 0, charges: 0, credits: 0, replaysAbsorbed: 0, byTool: {}, byProvider: {} };
      const forTool = (tool: string) => (usage.byTool[tool] ??= { runs: 0, charges: 0, credits: 0, replaysAbsorbed: 0 });
      for (const r of this.stmt.runsByTool.all(tenant)) {
        Object.assign(forTool(r.tool), { runs: r.runs, replaysAbsorbed: r.replays });
        usage.runs += r.runs;
        usage.replaysAbsorbed += r.replays;
      }
      for (const c of this.stmt.chargesByTool.all(tenant)) {
        Object.assign(forTool(c.tool), { charges: c.charges, credits: c.credits });
        usage.charges += c.charges;
        usage.credits += c.credits;
      }
      for (const p of this.stmt.chargesByProvider.all(tenant)) usage.byProvider[p.provider] = { charges: p.charges, credits: p.credits };
      return usage;
    });
  }

  // ---- housekeeping ----------------------------------------------------------------------

  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { runsForgotten: 0, assetsRemoved: 0 };
    const cutoff = this.now() - this.retentionMs;
    for (;;) {
      // One slice per transaction, and a turn of the event loop between: creates keep flowing.
      const slice = this.guard(() =>
        this.db
          .transaction(() => {
            const ids = this.stmt.expired.all(cutoff, SWEEP_SLICE);
            return { forgotten: ids.length, removed: this.forgetRuns(ids) };
          })
          .immediate(),
      );
      report.runsForgotten += slice.forgotten;
      report.assetsRemoved += slice.removed;
      if (slice.forgotten < SWEEP_SLICE) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.guard(() => {
      this.stmt.dropOldEvents.run(this.now() - EVENT_RETENTION_MS);
      // Hand the freed pages back to the filesystem, so the file tracks what is kept, not its peak.
      this.db.pragma('incremental_vacuum');
    });
    return report;
  }

  /** Delete runs with their data and asset links, then every asset no run links to. Call inside a transaction. */
  private forgetRuns(runIds: string[]): number {
    for (const id of runIds) {
      this.stmt.detachAll.run(id);
      this.stmt.deleteRun.run(id);
      this.replays.forget(id);
      this.finishedResults.delete(id);
    }
    return runIds.length === 0 ? 0 : this.stmt.dropOrphanAssets.run().changes;
  }

  // ---- stream events ---------------------------------------------------------------------

  async appendEvent(scope: string, streamId: string, message: string): Promise<string> {
    return new Promise((resolve, reject) => this.events.add({ scope, streamId, message, resolve, reject }));
  }

  /** Events of one tick go in one transaction (on the events connection; see eventsDb). */
  private commitEvents(batch: PendingEvent[]): void {
    try {
      const now = this.now();
      const ids = this.eventsDb
        .transaction(() => batch.map((e) => String(this.stmt.insertEvent.run(e.scope, e.streamId, e.message, now).lastInsertRowid)))
        .immediate();
      batch.forEach((e, i) => e.resolve(ids[i]!));
    } catch (err) {
      const typed = storageError(err, this.path);
      for (const e of batch) e.reject(typed);
    }
  }

  async eventStreamOf(scope: string, eventId: string): Promise<string | null> {
    return this.guard(() => {
      const id = Number(eventId);
      if (!Number.isSafeInteger(id)) return null;
      return this.stmt.eventStream.get(id, scope)?.stream_id ?? null;
    });
  }

  async eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]> {
    return this.guard(() => {
      const after = afterEventId === null ? 0 : Number(afterEventId);
      if (!Number.isSafeInteger(after)) return [];
      return this.stmt.eventsAfter.all(scope, streamId, after).map((e) => ({ id: String(e.id), streamId: e.stream_id, message: e.message }));
    });
  }

  async ping(): Promise<void> {
    this.guard(() => this.stmt.ping.get());
  }

  async close(): Promise<void> {
    // Batches already queued for this tick commit first (setImmediate callbacks run in order).
    await new Promise((resolve) => setImmediate(resolve));
    if (!this.db.open) return;
    await this.replays.close();
    if (this.eventsDb !== this.db) this.eventsDb.close();
    this.db.close();
  }

  /** Runs a synchronous body and turns any SQLite or filesystem failure into a typed error. */
  private guard<T>(body: () => T): T {
    try {
      return body();
    } catch (err) {
      throw storageError(err, this.path);
    }
  }
}

interface TransitionData {
  output?: JsonObject | undefined;
  result?: JsonObject;
  charge?: ChargeSource | undefined;
  error?: RunError;
}

function openDatabase(opts: SqliteLedgerOptions): Database.Database {
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
    // better-sqlite3 turns foreign keys on by default: off while tables are rebuilt (a dropped table
    // would cascade its deletes), then on for good.
    db.pragma('foreign_keys = OFF');
    migrate(db);
    db.pragma('foreign_keys = ON');
    if (opts.maxPageCount !== undefined) db.pragma(`max_page_count = ${Math.floor(opts.maxPageCount)}`);
    return db;
  } catch (err) {
    db?.close();
    throw storageError(err, path);
  }
}

/**
 * Runs the migrations this file lacks. Foreign keys stay off meanwhile (as SQLite's documented way
 * to rebuild a table asks), and are checked once before they are turned on.
 */
function migrate(db: Database.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`);
  const applied = db.prepare<[number], { version: number }>('SELECT version FROM schema_migrations WHERE version = ?');
  const newest = db.prepare<[], { v: number | null }>('SELECT max(version) AS v FROM schema_migrations').get()?.v ?? 0;
  const known = sqliteMigrations[sqliteMigrations.length - 1]?.version ?? 0;
  if (newest > known) {
    throw new StorageUnavailableError(
      `The ledger ${db.name} was written by a newer runledger (schema ${newest}, this one knows ${known}).`,
      { path: db.name, schema: newest, supported: known },
    );
  }
  for (const m of sqliteMigrations) {
    // Checked again inside the write lock: several processes may open a new file at once.
    db.transaction(() => {
      if (applied.get(m.version) !== undefined) return;
      db.exec(m.sql);
      const broken = db.pragma('foreign_key_check') as unknown[];
      if (broken.length > 0) throw new InternalError(`migration ${m.version} left ${broken.length} dangling references`);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
    }).immediate();
  }
}
