// The embedded ledger: one SQLite file (WAL, synchronous=FULL) that several processes may share.
// better-sqlite3 is synchronous; each verb runs to completion inside one transaction, and the
// async interface only wraps it so every backend looks the same to callers.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { nanoid } from 'nanoid';
import { InternalError, NotFoundError, RunledgerError, StorageUnavailableError, ValidationFailedError } from '../errors.js';
import { assertValidKey, differingFields, fingerprint, fingerprintedArgs } from './fingerprint.js';
import { canAdvance, isTerminal, Phase, PHASES, phaseProgress } from './phases.js';
import { storageError } from './sqlite-errors.js';
import { sqliteMigrations } from './sqlite-migrations.js';
import type {
  AssetRef,
  CancelOutcome,
  ClaimedRun,
  Conflict,
  CreateOutcome,
  CreatePreview,
  CreateRequest,
  JsonObject,
  ListQuery,
  NewAsset,
  Run,
  RunError,
  RunLedger,
  RunPage,
  StoredAsset,
  StoredEvent,
  SweepReport,
  Usage,
} from './types.js';

export const DEFAULT_LEASE_MS = 30_000;
export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Stream events only serve reconnects, so they are kept a day. */
export const EVENT_RETENTION_MS = 24 * 3600 * 1000;

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

interface RunRow {
  id: string;
  tenant: string;
  tool: string;
  idem_key: string;
  fingerprint: string;
  args: string;
  cost: number;
  phase: Phase;
  phases: string;
  progress: number;
  result: string | null;
  error: string | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
  attempts: number;
  replay_count: number;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

/** What the replay path reads: the caller already knows tenant, tool, key and (if it matches) args. */
type KeyedRow = Omit<RunRow, 'tenant' | 'tool' | 'idem_key' | 'args' | 'lease_owner' | 'lease_expires_at' | 'updated_at'>;
interface Identity {
  tenant: string;
  tool: string;
  idem_key: string;
  args: JsonObject;
}

interface ClaimedRow extends RunRow {
  recovery: string;
}

interface PendingCreate {
  req: CreateRequest;
  fp: string;
  args: JsonObject;
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

/** Collects items until the current tick ends, then hands them over together. */
class TickBatch<T> {
  private items: T[] = [];
  constructor(private readonly flush: (items: T[]) => void) {}
  add(item: T): void {
    if (this.items.push(item) === 1) {
      setImmediate(() => {
        const items = this.items;
        this.items = [];
        this.flush(items);
      });
    }
  }
}

interface AssetRow {
  n: number;
  sha256: string;
  mime: string;
  size: number;
  meta: string;
}

const RUN_COLUMNS = `id, tenant, tool, idem_key, fingerprint, args, cost, phase, phases, progress, result, error,
  lease_owner, lease_expires_at, attempts, replay_count, created_at, updated_at, deleted_at`;
const KEYED_COLUMNS = `id, fingerprint, cost, phase, phases, progress, result, error, attempts, replay_count,
  created_at, deleted_at`;
const LIVE = `phase IN ('queued', 'composing', 'rendering')`;
const MAX_PAGE = 100;

const iso = (ms: number): string => new Date(ms).toISOString();

function toRun(row: RunRow): Run {
  return keyedToRun(row, { ...row, args: JSON.parse(row.args) as JsonObject });
}

function keyedToRun(row: KeyedRow, who: Identity): Run {
  const phases = JSON.parse(row.phases) as Run['phases'];
  return {
    id: row.id,
    tenant: who.tenant,
    tool: who.tool,
    idempotencyKey: who.idem_key,
    fingerprint: row.fingerprint,
    args: who.args,
    cost: row.cost,
    phase: row.phase,
    phases,
    progress: row.progress,
    result: row.result === null ? null : (JSON.parse(row.result) as JsonObject),
    error: row.error === null ? null : (JSON.parse(row.error) as RunError),
    attempts: row.attempts,
    replayCount: row.replay_count,
    // The queued entry is stamped with created_at; reusing it spares a date format per replay.
    createdAt: phases[0]?.at ?? iso(row.created_at),
  };
}

function keyedRow(values: unknown[] | undefined): KeyedRow | undefined {
  if (values === undefined) return undefined;
  const [id, fingerprint, cost, phase, phases, progress, result, error, attempts, replay_count, created_at, deleted_at] =
    values as [string, string, number, Phase, string, number, string | null, string | null, number, number, number, number | null];
  return { id, fingerprint, cost, phase, phases, progress, result, error, attempts, replay_count, created_at, deleted_at };
}

function toAssetRef(row: AssetRow): AssetRef {
  return { n: row.n, sha256: row.sha256, mime: row.mime, size: row.size, meta: JSON.parse(row.meta) as JsonObject };
}

function requireName(value: string, field: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > 200) {
    throw new ValidationFailedError([{ field, rule: 'must be a non-empty string of at most 200 characters' }]);
  }
}

function encodeCursor(row: RunRow): string {
  return Buffer.from(JSON.stringify([row.created_at, row.id])).toString('base64url');
}

function decodeCursor(cursor: string): [number, string] {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof at === 'number' && typeof id === 'string') return [at, id];
  } catch {
    // fall through to the typed error
  }
  throw new ValidationFailedError([{ field: 'cursor', rule: 'must be a next_cursor value returned by list_runs' }]);
}

export class SqliteLedger implements RunLedger {
  readonly path: string;
  private readonly db: Database.Database;
  /**
   * Stream events are written on their own connection with synchronous=NORMAL: they must survive a
   * process restart (WAL gives that) but not power loss, and an fsync per SSE message would halve
   * HTTP throughput. Runs, keys and charges stay on the FULL connection.
   */
  private readonly eventsDb: Database.Database;
  private readonly now: () => number;
  private readonly leaseMs: number;
  private readonly retentionMs: number;
  /** Replays answered but not yet counted in the file, per run id. */
  private readonly pendingReplays = new Map<string, number>();
  private readonly flushTimer: NodeJS.Timeout;
  private readonly creates = new TickBatch<PendingCreate>((batch) => this.commitCreates(batch));
  private readonly events = new TickBatch<PendingEvent>((batch) => this.commitEvents(batch));
  private readonly stmt;

  constructor(opts: SqliteLedgerOptions) {
    this.path = opts.path;
    this.now = opts.clock ?? Date.now;
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.db = openDatabase(opts);
    this.eventsDb = opts.path === ':memory:' ? this.db : openDatabase({ ...opts, synchronous: 'NORMAL' });
    const db = this.db;
    const events = this.eventsDb;
    this.stmt = this.guard(() => ({
      byKey: db.prepare<[string, string, string], RunRow>(
        `SELECT ${RUN_COLUMNS} FROM runs WHERE tenant = ? AND tool = ? AND idem_key = ?`,
      ),
      // Raw rows (arrays): better-sqlite3 builds them much faster than named objects, and this
      // read is on every replay. keyedRow() names the columns, in KEYED_COLUMNS order.
      replayByKey: db
        .prepare<[string, string, string], unknown[]>(
          `SELECT ${KEYED_COLUMNS} FROM runs WHERE tenant = ? AND tool = ? AND idem_key = ?`,
        )
        .raw(true),
      argsById: db.prepare<[string], { args: string }>(`SELECT args FROM runs WHERE id = ?`),
      byId: db.prepare<[string], ClaimedRow>(`SELECT ${RUN_COLUMNS}, recovery FROM runs WHERE id = ?`),
      insert: db.prepare<unknown[], RunRow>(
        `INSERT INTO runs (id, tenant, tool, idem_key, fingerprint, args, cost, phase, phases, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)
         ON CONFLICT (tenant, tool, idem_key) DO NOTHING
         RETURNING ${RUN_COLUMNS}`,
      ),
      deleteRun: db.prepare<[string]>(`DELETE FROM runs WHERE id = ?`),
      nextClaimable: db.prepare<[number], { id: string }>(
        `SELECT id FROM runs WHERE ${LIVE} AND (lease_owner IS NULL OR lease_expires_at <= ?)
         ORDER BY created_at, id LIMIT 1`,
      ),
      lease: db.prepare<[string, number, number, string]>(
        `UPDATE runs SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?`,
      ),
      renew: db.prepare<[number, string, string]>(
        `UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND ${LIVE}`,
      ),
      release: db.prepare<[string, string]>(
        `UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?`,
      ),
      transition: db.prepare<[Phase, string, number, string, string | null, string | null, number | null, number, number, string]>(
        `UPDATE runs SET phase = ?, phases = ?, progress = ?, recovery = ?, result = ?, error = ?,
           lease_expires_at = ?, lease_owner = CASE WHEN ? THEN lease_owner ELSE NULL END, updated_at = ?
         WHERE id = ?`,
      ),
      touch: db.prepare<[number, number, number, string]>(
        `UPDATE runs SET progress = max(progress, ?), lease_expires_at = ?, updated_at = ? WHERE id = ?`,
      ),
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
      charge: db.prepare<[string, string, string, number, number]>(
        `INSERT INTO charges (run_id, tenant, tool, credits, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      tombstone: db.prepare<[number, number, string]>(
        `UPDATE runs SET deleted_at = ?, updated_at = ?, args = '{}', result = NULL, recovery = '{}',
           lease_owner = NULL, lease_expires_at = NULL WHERE id = ?`,
      ),
      addReplays: db.prepare<[number, string]>(`UPDATE runs SET replay_count = replay_count + ? WHERE id = ?`),
      runsByTool: db.prepare<[string], { tool: string; runs: number; replays: number }>(
        `SELECT tool, COUNT(*) AS runs, COALESCE(SUM(replay_count), 0) AS replays FROM runs WHERE tenant = ? GROUP BY tool`,
      ),
      chargesByTool: db.prepare<[string], { tool: string; charges: number; credits: number }>(
        `SELECT tool, COUNT(*) AS charges, COALESCE(SUM(credits), 0) AS credits FROM charges WHERE tenant = ? GROUP BY tool`,
      ),
      insertEvent: events.prepare<[string, string, string, number]>(
        `INSERT INTO events (session_id, stream_id, message, created_at) VALUES (?, ?, ?, ?)`,
      ),
      eventStream: events.prepare<[number, string], { stream_id: string }>(
        `SELECT stream_id FROM events WHERE id = ? AND session_id = ?`,
      ),
      eventsAfter: events.prepare<[string, string, number], { id: number; stream_id: string; message: string }>(
        `SELECT id, stream_id, message FROM events WHERE session_id = ? AND stream_id = ? AND id > ? ORDER BY id`,
      ),
      dropOldEvents: db.prepare<[number]>(`DELETE FROM events WHERE created_at <= ?`),
      ping: db.prepare(`SELECT 1`).pluck(),
      expired: db.prepare<[number], { id: string }>(
        `SELECT id FROM runs WHERE created_at <= ? AND (phase IN ('done', 'failed', 'canceled') OR deleted_at IS NOT NULL)`,
      ),
    }));
    this.flushTimer = setInterval(() => this.flushReplays(), opts.replayFlushMs ?? 1000);
    this.flushTimer.unref();
  }

  // ---- the fence -------------------------------------------------------------------------

  async createOrReplay(req: CreateRequest): Promise<CreateOutcome> {
    const { fp, args } = this.guard(() => this.checkRequest(req));
    // Fast path: a repeat needs no write lock. It decides nothing on its own: a miss still
    // goes through the fenced insert, which is what makes one run per key.
    const seen = this.guard(() => keyedRow(this.stmt.replayByKey.get(req.tenant, req.tool, req.idempotencyKey)));
    if (seen !== undefined && !this.isExpired(seen)) return this.guard(() => this.replayOrConflict(seen, req, fp, args));
    return new Promise((resolve, reject) => this.creates.add({ req, fp, args, resolve, reject }));
  }

  /**
   * Group commit: the creates that arrive in one tick are fenced in one transaction, so concurrent
   * callers share one fsync instead of queueing for one each. Every caller still hears back only
   * after the commit that holds its row; a lone caller waits one tick more than it would alone.
   */
  private commitCreates(batch: PendingCreate[]): void {
    const run = (items: PendingCreate[]) =>
      this.db
        .transaction(() =>
          items.map((item) => {
            try {
              return this.insertOrReplay(item.req, item.fp, item.args);
            } catch (err) {
              // A typed refusal (a deleted key) is this caller's answer, not the batch's failure.
              if (err instanceof RunledgerError) return err;
              throw err;
            }
          }),
        )
        .immediate();
    const settle = (item: PendingCreate, outcome: CreateOutcome | RunledgerError) =>
      outcome instanceof RunledgerError ? item.reject(outcome) : item.resolve(outcome);
    try {
      run(batch).forEach((outcome, i) => settle(batch[i]!, outcome));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(storageError(err, this.path));
        return;
      }
      // One request's failure (its row did not fit, say) must not fail its neighbours: alone, each
      // either commits or gets its own typed error. Nothing of the failed batch was written.
      for (const item of batch) {
        try {
          settle(item, run([item])[0]!);
        } catch (e) {
          item.reject(storageError(e, this.path));
        }
      }
    }
  }

  async preview(req: CreateRequest): Promise<CreatePreview> {
    return this.guard(() => {
      const { fp, args } = this.checkRequest(req);
      const seen = keyedRow(this.stmt.replayByKey.get(req.tenant, req.tool, req.idempotencyKey));
      if (seen === undefined || this.isExpired(seen)) return { kind: 'create', fingerprint: fp };
      const outcome = this.replayOrConflict(seen, req, fp, args, false);
      return outcome.kind === 'replayed' ? { kind: 'replay', run: outcome.run } : outcome;
    });
  }

  private checkRequest(req: CreateRequest): { fp: string; args: JsonObject } {
    requireName(req.tenant, 'tenant');
    requireName(req.tool, 'tool');
    assertValidKey(req.idempotencyKey);
    if (!Number.isInteger(req.cost) || req.cost < 0) throw new InternalError(`cost must be a whole number, got ${req.cost}`);
    return { fp: fingerprint(req.args), args: fingerprintedArgs(req.args) };
  }

  private insertOrReplay(req: CreateRequest, fp: string, args: JsonObject): CreateOutcome {
    const inserted = this.insertRun(req, fp, args);
    if (inserted !== undefined) return { kind: 'created', run: toRun(inserted) };
    const winner = keyedRow(this.stmt.replayByKey.get(req.tenant, req.tool, req.idempotencyKey));
    if (winner === undefined) throw new InternalError('fenced insert conflicted but no run holds the key');
    if (!this.isExpired(winner)) return this.replayOrConflict(winner, req, fp, args);
    // The key outlived its retention window before a sweep ran: forget it now, as a sweep would.
    this.forget([winner.id]);
    const fresh = this.insertRun(req, fp, args);
    if (fresh === undefined) throw new InternalError('insert after forgetting an expired key conflicted');
    return { kind: 'created', run: toRun(fresh) };
  }

  private insertRun(req: CreateRequest, fp: string, args: JsonObject): RunRow | undefined {
    const now = this.now();
    const phases = JSON.stringify([{ phase: Phase.queued, at: iso(now) }]);
    return this.stmt.insert.get(
      `run_${nanoid()}`,
      req.tenant,
      req.tool,
      req.idempotencyKey,
      fp,
      JSON.stringify(args),
      req.cost,
      phases,
      now,
      now,
    );
  }

  private replayOrConflict(
    row: KeyedRow,
    req: CreateRequest,
    fp: string,
    args: JsonObject,
    countReplay = true,
  ): Conflict | { kind: 'replayed'; run: Run } {
    if (row.deleted_at !== null) throw deletedKeyError(row);
    if (row.fingerprint !== fp) {
      return {
        kind: 'conflict',
        runId: row.id,
        createdAt: iso(row.created_at),
        differingFields: differingFields(JSON.parse(this.stmt.argsById.get(row.id)?.args ?? '{}') as JsonObject, args),
      };
    }
    if (countReplay) this.pendingReplays.set(row.id, (this.pendingReplays.get(row.id) ?? 0) + 1);
    // Same fingerprint, so the stored arguments equal these: no need to read and parse them.
    return { kind: 'replayed', run: keyedToRun(row, { tenant: req.tenant, tool: req.tool, idem_key: req.idempotencyKey, args }) };
  }

  private isExpired(row: KeyedRow): boolean {
    return row.created_at <= this.now() - this.retentionMs && (isTerminal(row.phase) || row.deleted_at !== null);
  }

  // ---- reading ---------------------------------------------------------------------------

  async getRun(tenant: string, runId: string): Promise<Run> {
    return this.guard(() => toRun(this.ownedRow(tenant, runId)));
  }

  async findRun(tenant: string, tool: string, idempotencyKey: string): Promise<Run> {
    return this.guard(() => {
      assertValidKey(idempotencyKey);
      const row = this.stmt.byKey.get(tenant, tool, idempotencyKey);
      if (row === undefined || this.isExpired(row)) {
        throw new NotFoundError(`No run of ${tool} for that idempotency_key`, { tool }, 'Check the tool name and key; a run is found only by the tool it was created with.');
      }
      if (row.deleted_at !== null) throw deletedKeyError(row);
      return toRun(row);
    });
  }

  async listRuns(tenant: string, query: ListQuery = {}): Promise<RunPage> {
    return this.guard(() => {
      const limit = query.limit ?? 20;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
        throw new ValidationFailedError([{ field: 'limit', rule: `must be a whole number from 1 to ${MAX_PAGE}` }]);
      }
      if (query.phase !== undefined && !PHASES.includes(query.phase)) {
        throw new ValidationFailedError([{ field: 'phase', rule: `must be one of ${PHASES.join(', ')}` }]);
      }
      const where = ['tenant = ?', 'deleted_at IS NULL'];
      const params: unknown[] = [tenant];
      if (query.tool !== undefined) {
        where.push('tool = ?');
        params.push(query.tool);
      }
      if (query.phase !== undefined) {
        where.push('phase = ?');
        params.push(query.phase);
      }
      if (query.cursor !== undefined) {
        const [at, id] = decodeCursor(query.cursor);
        where.push('(created_at < ? OR (created_at = ? AND id < ?))');
        params.push(at, at, id);
      }
      const rows = this.db
        .prepare<unknown[], RunRow>(
          `SELECT ${RUN_COLUMNS} FROM runs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`,
        )
        .all(...params, limit + 1);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return { runs: page.map(toRun), nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
    });
  }

  async listAssets(tenant: string, runId: string): Promise<AssetRef[]> {
    return this.guard(() => {
      this.ownedRow(tenant, runId);
      return this.stmt.runAssets.all(runId).map(toAssetRef);
    });
  }

  async readAsset(tenant: string, runId: string, n: number): Promise<StoredAsset> {
    return this.guard(() => {
      this.ownedRow(tenant, runId);
      const asset = this.stmt.assetBytes.get(runId, n);
      if (asset === undefined) throw new NotFoundError(`Asset ${n} of run ${runId}`, { run_id: runId, n }, 'poll_run lists the assets a run has.');
      return asset;
    });
  }

  /** The live (not deleted) run of this tenant; another tenant's run is reported as not found. */
  private ownedRow(tenant: string, runId: string): ClaimedRow {
    const row = this.stmt.byId.get(runId);
    if (row === undefined || row.tenant !== tenant) throw new NotFoundError(`Run ${runId}`, { run_id: runId });
    if (row.deleted_at !== null) throw deletedKeyError(row);
    return row;
  }

  // ---- workers ---------------------------------------------------------------------------

  async claim(owner: string): Promise<ClaimedRun | null> {
    return this.guard(() =>
      this.db
        .transaction((): ClaimedRun | null => {
          const now = this.now();
          const next = this.stmt.nextClaimable.get(now);
          if (next === undefined) return null;
          this.stmt.lease.run(owner, now + this.leaseMs, now, next.id);
          return this.claimed(next.id);
        })
        .immediate(),
    );
  }

  private claimed(runId: string): ClaimedRun {
    const row = this.stmt.byId.get(runId);
    if (row === undefined) throw new InternalError(`run ${runId} vanished while leased`);
    return {
      ...toRun(row),
      recovery: JSON.parse(row.recovery) as ClaimedRun['recovery'],
      assets: this.stmt.runAssets.all(runId).map(toAssetRef),
    };
  }

  async renew(runId: string, owner: string): Promise<boolean> {
    return this.guard(() => this.stmt.renew.run(this.now() + this.leaseMs, runId, owner).changes === 1);
  }

  async release(runId: string, owner: string): Promise<void> {
    this.guard(() => this.stmt.release.run(runId, owner));
  }

  async advance(runId: string, owner: string, to: Phase, output?: JsonObject): Promise<Run | null> {
    if (isTerminal(to)) throw new InternalError(`advance cannot end a run (${to}); use finish, fail or cancel`);
    return this.guard(() => this.transition(runId, owner, to, { output }));
  }

  async attachAsset(runId: string, owner: string, n: number, asset: NewAsset, progress: number): Promise<boolean> {
    const sha256 = createHash('sha256').update(asset.bytes).digest('hex');
    return this.guard(() =>
      this.db
        .transaction(() => {
          const row = this.heldRow(runId, owner);
          if (row === null) return false;
          const now = this.now();
          this.stmt.putAsset.run(sha256, asset.mime, asset.bytes.byteLength, asset.bytes, now);
          this.stmt.attach.run(runId, n, sha256, JSON.stringify(asset.meta));
          this.stmt.touch.run(progress, now + this.leaseMs, now, runId);
          return true;
        })
        .immediate(),
    );
  }

  async finish(runId: string, owner: string, result: JsonObject): Promise<Run | null> {
    return this.guard(() => this.transition(runId, owner, Phase.done, { result }));
  }

  async fail(runId: string, owner: string, error: RunError): Promise<Run | null> {
    return this.guard(() => this.transition(runId, owner, Phase.failed, { error }));
  }

  /** The run if `owner` holds its lease and it is still live; null otherwise. */
  private heldRow(runId: string, owner: string): ClaimedRow | null {
    const row = this.stmt.byId.get(runId);
    if (row === undefined || row.lease_owner !== owner || isTerminal(row.phase) || row.deleted_at !== null) return null;
    return row;
  }

  /** One forward move, its timestamp, its recovery point and (on done) the charge, atomically. */
  private transition(
    runId: string,
    owner: string | null,
    to: Phase,
    data: { output?: JsonObject | undefined; result?: JsonObject; error?: RunError },
    tenant?: string,
  ): Run | null {
    return this.db
      .transaction((): Run | null => {
        const row = owner === null ? this.ownedRow(tenant ?? '', runId) : this.heldRow(runId, owner);
        if (row === null) return null;
        if (!canAdvance(row.phase, to)) throw new InternalError(`run ${runId} cannot move from ${row.phase} to ${to}`);
        const now = this.now();
        const phases = JSON.parse(row.phases) as Run['phases'];
        phases.push({ phase: to, at: iso(Math.max(now, row.updated_at)) });
        const recovery = JSON.parse(row.recovery) as Record<string, JsonObject>;
        if (data.output !== undefined) recovery[row.phase] = data.output;
        const terminal = isTerminal(to);
        this.stmt.transition.run(
          to,
          JSON.stringify(phases),
          to === Phase.done ? 1 : Math.max(row.progress, phaseProgress(to)),
          JSON.stringify(recovery),
          data.result === undefined ? row.result : JSON.stringify(data.result),
          data.error === undefined ? row.error : JSON.stringify(data.error),
          terminal ? null : now + this.leaseMs,
          terminal ? 0 : 1,
          now,
          runId,
        );
        if (to === Phase.done) this.stmt.charge.run(runId, row.tenant, row.tool, row.cost, now);
        const updated = this.stmt.byId.get(runId);
        return updated === undefined ? null : toRun(updated);
      })
      .immediate();
  }

  // ---- the caller's verbs ----------------------------------------------------------------

  async cancel(tenant: string, runId: string): Promise<{ run: Run; outcome: CancelOutcome }> {
    return this.guard(() =>
      this.db
        .transaction(() => {
          const row = this.ownedRow(tenant, runId);
          if (row.phase === Phase.canceled) return { run: toRun(row), outcome: 'already_canceled' as const };
          if (isTerminal(row.phase)) return { run: toRun(row), outcome: 'already_finished' as const };
          const run = this.transition(runId, null, Phase.canceled, {}, tenant);
          if (run === null) throw new InternalError(`run ${runId} could not be canceled`);
          return { run, outcome: 'canceled' as const };
        })
        .immediate(),
    );
  }

  async deleteRun(tenant: string, runId: string): Promise<void> {
    this.guard(() =>
      this.db
        .transaction(() => {
          const row = this.ownedRow(tenant, runId);
          if (!isTerminal(row.phase)) this.transition(runId, null, Phase.canceled, {}, tenant);
          const now = this.now();
          this.stmt.tombstone.run(now, now, runId);
          this.stmt.detachAll.run(runId);
          this.stmt.dropOrphanAssets.run();
        })
        .immediate(),
    );
  }

  async usage(tenant: string): Promise<Usage> {
    return this.guard(() => {
      this.flushReplays();
      const usage: Usage = { tenant, runs: 0, charges: 0, credits: 0, replaysAbsorbed: 0, byTool: {} };
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
      return usage;
    });
  }

  // ---- housekeeping ----------------------------------------------------------------------

  async sweep(): Promise<SweepReport> {
    return this.guard(() =>
      this.db
        .transaction(() => {
          const ids = this.stmt.expired.all(this.now() - this.retentionMs).map((r) => r.id);
          this.stmt.dropOldEvents.run(this.now() - EVENT_RETENTION_MS);
          return { runsForgotten: ids.length, assetsRemoved: this.forget(ids) };
        })
        .immediate(),
    );
  }

  /** Delete runs with their asset links, then every asset no run links to. Call inside a transaction. */
  private forget(runIds: string[]): number {
    for (const id of runIds) {
      this.stmt.detachAll.run(id);
      this.stmt.deleteRun.run(id);
      this.pendingReplays.delete(id);
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
      return this.stmt.eventsAfter
        .all(scope, streamId, after)
        .map((e) => ({ id: String(e.id), streamId: e.stream_id, message: e.message }));
    });
  }

  async ping(): Promise<void> {
    this.guard(() => this.stmt.ping.get());
  }

  /** Write batched replay counts. Losing a few on a crash costs a statistic, never a key. */
  private flushReplays(): void {
    if (this.pendingReplays.size === 0 || !this.db.open) return;
    const batch = [...this.pendingReplays];
    this.pendingReplays.clear();
    try {
      this.db.transaction(() => {
        for (const [id, count] of batch) this.stmt.addReplays.run(count, id);
      })();
    } catch {
      // Busy or full: put the counts back and try again on the next tick.
      for (const [id, count] of batch) this.pendingReplays.set(id, (this.pendingReplays.get(id) ?? 0) + count);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    // Batches already queued for this tick commit first (setImmediate callbacks run in order).
    await new Promise((resolve) => setImmediate(resolve));
    if (!this.db.open) return;
    this.flushReplays();
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

function deletedKeyError(row: KeyedRow): NotFoundError {
  return new NotFoundError(
    `Run ${row.id} (deleted)`,
    { run_id: row.id, deleted: true },
    'This run was deleted; its key stays reserved until the retention window ends. Use a new idempotency_key for a new run.',
  );
}

function openDatabase(opts: SqliteLedgerOptions): Database.Database {
  const { path } = opts;
  let db: Database.Database | undefined;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, { timeout: opts.busyTimeoutMs ?? 5000 });
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    migrate(db);
    if (opts.maxPageCount !== undefined) db.pragma(`max_page_count = ${Math.floor(opts.maxPageCount)}`);
    return db;
  } catch (err) {
    db?.close();
    throw storageError(err, path);
  }
}

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
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
    }).immediate();
  }
}
