// The shared ledger for deployments with several replicas: one PostgreSQL database, whose unique
// constraint fences duplicate calls across every replica. Like the SQLite backend it only does I/O:
// every decision is a function of ../rules.ts, called inside this backend's (async) transactions.
// Changes are emitted here and announced to the other replicas once the transaction that makes them
// commits (announcer.ts says why not inside it), so their waiters and idle workers hear of them.
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import { BoundedMap } from '../../bounded-map.js';
import { InternalError, RunledgerError, StorageUnavailableError } from '../../errors.js';
import { failpoint } from '../../failpoints.js';
import { ChangeFeed } from '../change-feed.js';
import { assertValidKey, fingerprintedArgs } from '../fingerprint.js';
import { isTerminal, LIVE_PHASES, Phase, sqlPhaseList, TERMINAL_PHASES } from '../phases.js';
import { ReplayCounter } from '../replay-counter.js';
import {
  assetNotFound,
  cancelDecision,
  checkCreate,
  checkListQuery,
  claimUpdate,
  isClaimable,
  conflictOf,
  DEFAULT_LEASE_MS,
  DEFAULT_RETENTION_MS,
  deletedRunError,
  EVENT_RETENTION_MS,
  holdsLease,
  isExpired,
  judgeExisting,
  KEYED_COLUMNS,
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
import { Announcer, heardChanges } from './announcer.js';
import { describeUrl, serverOf, storageError } from './errors.js';
import { postgresMigrations } from './migrations.js';

export interface PostgresLedgerOptions {
  /** postgres:// or postgresql:// URL; a `schema` query parameter picks the schema. */
  url: string;
  /** The schema holding the tables (created if missing); default the URL's, else "runledger". */
  schema?: string | undefined;
  /** Most connections this process opens for runs (one more listens, one announces, one writes stream events). */
  poolSize?: number | undefined;
  clock?: (() => number) | undefined;
  leaseMs?: number | undefined;
  retentionMs?: number | undefined;
  replayFlushMs?: number | undefined;
}

type Client = pg.PoolClient;
type Replayed = Extract<CreateOutcome, { kind: 'replayed' }>;
type RunRowWithArgs = RunRow & { args: string };

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;
const LIVE = `phase IN (${sqlPhaseList(LIVE_PHASES)})`;
const TERMINAL = `phase IN (${sqlPhaseList(TERMINAL_PHASES)})`;
const SWEEP_SLICE = 500;
/** Taken (per transaction) while migrating, so replicas that start together migrate one at a time. */
const MIGRATION_LOCK = 0x72756e6c; // "runl"

/**
 * BIGINT (and COUNT) as JS numbers: times are milliseconds, far inside the exact range. Set per pool,
 * so no other user of `pg` in the process is affected.
 */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

interface AssetRow {
  n: number;
  sha256: string;
  mime: string;
  size: number;
  meta: string;
}

const toAssetRef = (row: AssetRow): AssetRef => ({ n: row.n, sha256: row.sha256, mime: row.mime, size: row.size, meta: JSON.parse(row.meta) as JsonObject });
const parseJson = (text: string | null | undefined): JsonObject | null => (text == null ? null : (JSON.parse(text) as JsonObject));

export class PostgresLedger implements RunLedger {
  readonly leaseMs: number;
  private readonly url: string;
  private readonly schema: string;
  private readonly channel: string;
  private readonly pool: pg.Pool;
  /** Stream events only serve reconnects: written without waiting for the WAL flush, on their own pool. */
  private readonly eventsPool: pg.Pool;
  private readonly now: () => number;
  private readonly retentionMs: number;
  private readonly replays: ReplayCounter;
  private readonly changes = new ChangeFeed();
  private readonly announcer: Announcer;
  /** Announcements go out on their own connection, which does not wait for the WAL flush. */
  private readonly announcePool: pg.Pool;
  /** The changes each open transaction has made, emitted and announced once it commits. */
  private readonly uncommitted = new Map<pg.Pool | Client, RunChange[]>();
  /** A done run's result never changes: read once, then remembered. */
  private readonly finishedResults = new BoundedMap<string, JsonObject>(4096);
  /** Keys this process has created or answered: a retry of one is read before anything is written. */
  private readonly knownKeys = new BoundedMap<string, true>(16_384);
  private listener: pg.Client | null = null;
  private closed = false;

  private constructor(opts: PostgresLedgerOptions, url: string, schema: string) {
    this.url = url;
    this.schema = schema;
    this.channel = `runledger:${schema}`;
    this.now = opts.clock ?? Date.now;
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    const connection = { connectionString: url, types: TYPES, connectionTimeoutMillis: 5000 };
    // Statements are prepared once per connection, but planned on every run: a plan made generic while
    // a table was small (a sequential scan) would stay with it as it grows.
    this.pool = new pg.Pool({ ...connection, max: opts.poolSize ?? 10, options: `-c search_path=${schema} -c plan_cache_mode=force_custom_plan` });
    // One connection: appends are inserted in the order they were made, so ids rise in that order.
    this.eventsPool = new pg.Pool({ ...connection, max: 1, options: `-c search_path=${schema} -c synchronous_commit=off` });
    // An idle connection the server drops (a restart, pg_terminate_backend) must not take the process down:
    // the pool discards it and opens another when next needed.
    this.announcePool = new pg.Pool({ ...connection, max: 1, options: '-c synchronous_commit=off' });
    this.announcer = new Announcer(this.announcePool, this.channel, randomUUID());
    for (const pool of [this.pool, this.eventsPool, this.announcePool]) pool.on('error', () => undefined);
    this.replays = new ReplayCounter(async (counts) => {
      await this.pool.query(
        // A run forgotten since its replays were counted takes its count with it.
        `INSERT INTO run_replays (run_id, count)
         SELECT c.id, c.n FROM unnest($1::text[], $2::int[]) AS c(id, n) WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = c.id)
         ON CONFLICT (run_id) DO UPDATE SET count = run_replays.count + excluded.count`,
        [counts.map(([id]) => id), counts.map(([, n]) => n)],
      );
    }, opts.replayFlushMs ?? 1000);
  }

  /** Connects, migrates (once, whichever replica gets there first) and starts listening for changes. */
  static async open(opts: PostgresLedgerOptions): Promise<PostgresLedger> {
    const parsed = new URL(opts.url);
    const schema = opts.schema ?? parsed.searchParams.get('schema') ?? 'runledger';
    if (!SCHEMA.test(schema)) {
      throw new StorageUnavailableError(`The PostgreSQL schema name "${schema}" is not usable: lower-case letters, digits and "_", at most 63.`, { schema });
    }
    parsed.searchParams.delete('schema');
    const ledger = new PostgresLedger(opts, parsed.toString(), schema);
    try {
      await ledger.migrate();
      await ledger.listen();
    } catch (err) {
      await ledger.close().catch(() => undefined);
      throw storageError(err, ledger.url);
    }
    return ledger;
  }

  describe(): string {
    return describeUrl(this.url, this.schema);
  }

  subscribe(listener: (change: RunChange) => void): () => void {
    return this.changes.subscribe(listener);
  }

  // ---- connections ---------------------------------------------------------------------------

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      for (const m of [{ version: 0, name: 'schema', sql: '' }, ...postgresMigrations]) {
        await client.query('BEGIN');
        try {
          await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
          await client.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
          await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
          const newest = (await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')).rows[0]?.v ?? 0;
          const known = postgresMigrations[postgresMigrations.length - 1]?.version ?? 0;
          if (newest > known) {
            throw new StorageUnavailableError(
              `The ledger in schema ${this.schema} at ${serverOf(this.url)} was written by a newer runledger (schema ${newest}, this one knows ${known}).`,
              { schema: newest, supported: known },
            );
          }
          const applied = (await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version])).rowCount === 1;
          if (m.version > 0 && !applied) {
            await client.query(m.sql);
            await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
          }
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      }
    } finally {
      client.release();
    }
  }

  /**
   * One connection listens for every replica's changes. When it drops, waiters fall back on their
   * polling, and it reconnects on its own, backing off.
   */
  private async listen(attempt = 0): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url, types: TYPES, connectionTimeoutMillis: 5000 });
    const retry = () => {
      if (this.listener !== client && this.listener !== null) return;
      this.listener = null;
      client.end().catch(() => undefined);
      if (!this.closed) setTimeout(() => void this.listen(attempt + 1).catch(() => undefined), Math.min(5000, 100 * 2 ** attempt)).unref();
    };
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', (message) => {
      if (message.channel !== this.channel || message.payload === undefined) return;
      for (const change of heardChanges(message.payload, this.announcer.origin)) this.changes.emit(change);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
      this.listener = client;
    } catch (err) {
      if (attempt === 0) throw err;
      retry();
    }
  }

  /** Records a change: published at once when made by a statement on its own, else when its transaction commits. */
  private changed(db: pg.Pool | Client, runId: string, phase: Phase): void {
    const inTransaction = this.uncommitted.get(db);
    if (inTransaction !== undefined) inTransaction.push({ runId, phase });
    else this.publish([{ runId, phase }]);
  }

  private publish(changes: RunChange[]): void {
    for (const change of changes) this.changes.emit(change);
    this.announcer.announce(changes);
  }

  /** Runs `body` in one transaction on one connection; a connection that failed is not reused. */
  private async tx<T>(body: (client: Client) => Promise<T>): Promise<T> {
    return this.guard(async () => {
      const client = await this.pool.connect();
      let broken: unknown;
      const changes: RunChange[] = [];
      this.uncommitted.set(client, changes);
      try {
        await client.query('BEGIN');
        const result = await body(client);
        await client.query('COMMIT');
        this.publish(changes);
        return result;
      } catch (err) {
        broken = err instanceof RunledgerError ? undefined : err;
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        this.uncommitted.delete(client);
        client.release(broken instanceof Error ? broken : undefined);
      }
    });
  }

  private async guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      throw storageError(err, this.url);
    }
  }

  // ---- the fence -----------------------------------------------------------------------------

  async createOrReplay(req: CreateRequest): Promise<CreateOutcome> {
    const fp = checkCreate(req);
    return this.guard(async () => {
      const fenceKey = `${req.tenant}\u0000${req.tool}\u0000${req.idempotencyKey}`;
      // A key this process has met is most likely a retry: read it, which writes nothing. A key it has
      // not is most likely new: the fenced insert goes first, then the key's holder is read if it has one.
      // A miss decides nothing: only the insert does.
      if (this.knownKeys.has(fenceKey)) {
        const seen = await this.keyed(this.pool, req);
        if (seen !== undefined && !isExpired(seen, this.now(), this.retentionMs)) return this.answerExisting(seen, req, fp);
      }
      const attempt = await this.insertOrSee(this.pool, req, fp);
      this.knownKeys.set(fenceKey, true);
      if ('created' in attempt) return attempt.created;
      if (attempt.holder !== undefined && !isExpired(attempt.holder, this.now(), this.retentionMs)) return this.answerExisting(attempt.holder, req, fp);
      // The key had expired, or its holder was forgotten between the insert and the read.
      return this.tx(async (client) => {
        const winner = await this.keyed(client, req, 'FOR UPDATE');
        if (winner !== undefined && !isExpired(winner, this.now(), this.retentionMs)) return this.answerExisting(winner, req, fp, client);
        // Past retention, and locked by this transaction: forget it as a sweep would, then create.
        if (winner !== undefined) await this.forgetRuns(client, [winner.id]);
        const again = await this.insertOrSee(client, req, fp);
        if ('created' in again) return again.created;
        // Another replica forgot it and created the key's new run first: that run answers.
        if (again.holder === undefined) throw new InternalError('the key is taken but no run holds it');
        return this.answerExisting(again.holder, req, fp, client);
      });
    });
  }

  async preview(req: CreateRequest): Promise<CreatePreview> {
    const fp = checkCreate(req);
    return this.guard(async () => {
      const seen = await this.keyed(this.pool, req);
      if (seen === undefined || isExpired(seen, this.now(), this.retentionMs)) return { kind: 'create', fingerprint: fp };
      const outcome = await this.answerExisting(seen, req, fp, this.pool, false);
      return outcome.kind === 'replayed' ? { kind: 'replay', run: outcome.run } : outcome;
    });
  }

  private async keyed(db: pg.Pool | Client, req: CreateRequest, lock = ''): Promise<KeyedRow | undefined> {
    const { rows } = await db.query<KeyedRow>({
      ...(lock === '' ? { name: 'keyed' } : {}),
      text: `SELECT ${KEYED_COLUMNS} FROM runs WHERE tenant = $1 AND tool = $2 AND idem_key = $3 ${lock}`,
      values: [req.tenant, req.tool, req.idempotencyKey],
    });
    return rows[0];
  }

  /**
   * The fenced insert; when the key is taken, the run holding it, read by a second statement (whose
   * snapshot sees the holder the insert waited for; `holder` is undefined only if it has since been
   * forgotten). A plain INSERT is planned in a few microseconds; one statement that also read the
   * holder took 0.15 ms to plan on every create.
   */
  private async insertOrSee(db: pg.Pool | Client, req: CreateRequest, fp: string): Promise<{ created: CreateOutcome } | { holder: KeyedRow | undefined }> {
    const row = newRunRow(req, fp, this.now(), this.leaseMs);
    const args = fingerprintedArgs(req.args);
    const { rowCount } = await db.query({
      name: 'insert-run',
      text: `INSERT INTO runs (id, tenant, tool, idem_key, fingerprint, cost, args, phase, created_at, updated_at,
               attempts, lease_owner, lease_expires_at, claimed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (tenant, tool, idem_key) DO NOTHING`,
      values: [row.id, row.tenant, row.tool, row.idem_key, fp, row.cost, JSON.stringify(args), row.phase, row.created_at, row.updated_at,
        row.attempts, row.lease_owner, row.lease_expires_at, row.claimed_at],
    });
    if (rowCount === 1) {
      this.changed(db, row.id, Phase.queued);
      return { created: { kind: 'created', run: toRun(row, row, { args, result: null }) } };
    }
    return { holder: await this.keyed(db, req) };
  }

  private async answerExisting(row: KeyedRow, req: CreateRequest, fp: string, db: pg.Pool | Client = this.pool, countReplay = true): Promise<Conflict | Replayed> {
    switch (judgeExisting(row, fp, this.now(), this.retentionMs)) {
      case 'deleted':
        throw deletedRunError(row.id);
      case 'conflict': {
        const { rows } = await db.query<{ args: string }>('SELECT args FROM runs WHERE id = $1', [row.id]);
        return conflictOf(row, parseJson(rows[0]?.args) ?? {}, req.args);
      }
      case 'expired':
        throw new InternalError(`run ${row.id} expired while it was being answered`);
      case 'replay':
        if (countReplay) this.replays.count(row.id);
        return {
          kind: 'replayed',
          run: toRun(row, { tenant: req.tenant, tool: req.tool, idem_key: req.idempotencyKey }, { args: fingerprintedArgs(req.args), result: await this.resultOf(row, db) }),
        };
    }
  }

  /** Only a done run has a result, and it never changes: read once, then remembered. */
  private async resultOf(row: Pick<KeyedRow, 'id' | 'phase'>, db: pg.Pool | Client = this.pool): Promise<JsonObject | null> {
    if (row.phase !== Phase.done) return null;
    let result = this.finishedResults.get(row.id);
    if (result === undefined) {
      const { rows } = await db.query<{ result: string | null }>({ name: 'result', text: 'SELECT result FROM run_data WHERE run_id = $1', values: [row.id] });
      this.finishedResults.set(row.id, (result = parseJson(rows[0]?.result) ?? {}));
    }
    return result;
  }

  // ---- reading -------------------------------------------------------------------------------

  private async fullRun(row: RunRowWithArgs, db: pg.Pool | Client = this.pool): Promise<Run> {
    return toRun(row, row, { args: parseJson(row.args) ?? {}, result: await this.resultOf(row, db) });
  }

  private async byId(db: pg.Pool | Client, runId: string, lock = ''): Promise<RunRowWithArgs | undefined> {
    const { rows } = await db.query<RunRowWithArgs>(`SELECT ${RUN_COLUMNS}, args FROM runs WHERE id = $1 ${lock}`, [runId]);
    return rows[0];
  }

  private async visible(db: pg.Pool | Client, tenant: string, runId: string, lock = ''): Promise<RunRowWithArgs> {
    return visibleRow(await this.byId(db, runId, lock), tenant, runId);
  }

  async getRun(tenant: string, runId: string): Promise<Run> {
    return this.guard(async () => this.fullRun(await this.visible(this.pool, tenant, runId)));
  }

  async findRun(tenant: string, tool: string, idempotencyKey: string): Promise<Run> {
    assertValidKey(idempotencyKey);
    return this.guard(async () => {
      const { rows } = await this.pool.query<RunRowWithArgs>(`SELECT ${RUN_COLUMNS}, args FROM runs WHERE tenant = $1 AND tool = $2 AND idem_key = $3`, [
        tenant,
        tool,
        idempotencyKey,
      ]);
      const row = rows[0];
      if (row === undefined || isExpired(row, this.now(), this.retentionMs)) throw keyNotFound(tool);
      if (row.deleted_at !== null) throw deletedRunError(row.id);
      return this.fullRun(row);
    });
  }

  async listRuns(tenant: string, query: ListQuery = {}): Promise<RunPage> {
    const q = checkListQuery(query);
    return this.guard(async () => {
      const params: unknown[] = [tenant];
      const where = ['tenant = $1', 'deleted_at IS NULL'];
      const param = (value: unknown) => `$${params.push(value)}`;
      if (q.tool !== undefined) where.push(`tool = ${param(q.tool)}`);
      if (q.phase !== undefined) where.push(`phase = ${param(q.phase)}`);
      if (q.before !== undefined) {
        where.push(`(created_at < ${param(q.before.createdAt)} OR (created_at = ${param(q.before.createdAt)} AND id < ${param(q.before.id)}))`);
      }
      const { rows } = await this.pool.query<RunRowWithArgs>(
        `SELECT ${RUN_COLUMNS}, args FROM runs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ${param(q.limit + 1)}`,
        params,
      );
      const page = pageOf(rows, q.limit);
      return { runs: await Promise.all(page.rows.map((row) => this.fullRun(row))), nextCursor: page.nextCursor };
    });
  }

  private async assetsOf(db: pg.Pool | Client, runId: string): Promise<AssetRef[]> {
    const { rows } = await db.query<AssetRow>(
      `SELECT ra.n, ra.sha256, a.mime, a.size, ra.meta FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = $1 ORDER BY ra.n`,
      [runId],
    );
    return rows.map(toAssetRef);
  }

  async listAssets(tenant: string, runId: string): Promise<AssetRef[]> {
    return this.guard(async () => {
      await this.visible(this.pool, tenant, runId);
      return this.assetsOf(this.pool, runId);
    });
  }

  async readAsset(tenant: string, runId: string, n: number): Promise<StoredAsset> {
    return this.guard(async () => {
      await this.visible(this.pool, tenant, runId);
      const { rows } = await this.pool.query<StoredAsset>(
        `SELECT a.sha256, a.mime, a.bytes FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = $1 AND ra.n = $2`,
        [runId, n],
      );
      if (rows[0] === undefined) throw assetNotFound(runId, n);
      return rows[0];
    });
  }

  // ---- workers -------------------------------------------------------------------------------

  async claim(owner: string, tools?: readonly string[]): Promise<ClaimedRun | null> {
    return this.tx(async (client) => {
      const now = this.now();
      // SKIP LOCKED: replicas claiming at once each take a different run instead of queueing on one.
      const { rows } = await client.query<RunRowWithArgs>(
        `SELECT ${RUN_COLUMNS}, args FROM runs WHERE ${LIVE} AND (lease_owner IS NULL OR ${TAKEOVER_AT_SQL} <= $1)
           ${tools === undefined ? '' : 'AND tool = ANY($2)'}
         ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`,
        tools === undefined ? [now] : [now, tools],
      );
      const next = rows[0];
      if (next === undefined) return null;
      const run = await this.lease(client, next, owner, now);
      const recovery = await client.query<{ recovery: string | null }>('SELECT recovery FROM run_data WHERE run_id = $1', [next.id]);
      const points = (parseJson(recovery.rows[0]?.recovery) ?? {}) as ClaimedRun['recovery'];
      return toClaimedRun(run, points, await this.assetsOf(client, next.id));
    });
  }

  /** Leases `row` to `owner`, inside the transaction that locked it. */
  private async lease(client: Client, row: RunRowWithArgs, owner: string, now: number): Promise<Run> {
    const claim = claimUpdate(row, owner, now, this.leaseMs);
    await client.query(
      `UPDATE runs SET lease_owner = $1, lease_expires_at = $2, claimed_at = $3, attempts = $4, stalls = $5, stall_backoff_ms = $6 WHERE id = $7`,
      [claim.lease_owner, claim.lease_expires_at, claim.claimed_at, claim.attempts, claim.stalls, claim.stall_backoff_ms, row.id],
    );
    return this.fullRun({ ...row, ...claim }, client);
  }

  async claimRun(runId: string, owner: string): Promise<Run | null> {
    return this.tx(async (client) => {
      const now = this.now();
      const row = await this.byId(client, runId, 'FOR UPDATE');
      return row !== undefined && isClaimable(row, now) ? this.lease(client, row, owner, now) : null;
    });
  }

  async forget(runId: string, owner: string): Promise<boolean> {
    return this.tx(async (client) => {
      if ((await this.held(client, runId, owner)) === null) return false;
      await this.forgetRuns(client, [runId]);
      return true;
    });
  }

  async renew(runId: string, owner: string): Promise<boolean> {
    return this.guard(async () => {
      const { rowCount } = await this.pool.query(`UPDATE runs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND ${LIVE}`, [
        this.now() + this.leaseMs,
        runId,
        owner,
      ]);
      return rowCount === 1;
    });
  }

  async release(runId: string, owner: string): Promise<void> {
    await this.guard(() => this.pool.query('UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2', [runId, owner]));
  }

  async abandon(runId: string, owner: string): Promise<void> {
    await this.guard(() => this.pool.query(`UPDATE runs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND ${LIVE}`, [this.now(), runId, owner]));
  }

  /** The run locked for this transaction if `owner` holds it, else null (the run is no longer theirs). */
  private async held(client: Client, runId: string, owner: string): Promise<RunRowWithArgs | null> {
    const row = await this.byId(client, runId, 'FOR UPDATE');
    return holdsLease(row, owner) ? row! : null;
  }

  async advance(runId: string, owner: string, to: Phase, output?: JsonObject): Promise<Run | null> {
    if (isTerminal(to)) throw new InternalError(`advance cannot end a run (${to}); use finish, fail or cancel`);
    return this.heldTransition(runId, owner, to, { output });
  }

  async checkpoint(runId: string, owner: string, name: string, value: JsonObject): Promise<boolean> {
    return this.tx(async (client) => {
      if ((await this.held(client, runId, owner)) === null) return false;
      await this.patchRecovery(client, runId, { [name]: value });
      const now = this.now();
      await client.query('UPDATE runs SET lease_expires_at = $1, progressed_at = $2 WHERE id = $3', [now + this.leaseMs, now, runId]);
      return true;
    });
  }

  private async patchRecovery(client: Client, runId: string, patch: JsonObject): Promise<void> {
    const { rows } = await client.query<{ recovery: string | null }>('SELECT recovery FROM run_data WHERE run_id = $1', [runId]);
    const recovery = { ...(parseJson(rows[0]?.recovery) ?? {}), ...patch };
    await client.query(
      `INSERT INTO run_data (run_id, recovery) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET recovery = excluded.recovery`,
      [runId, JSON.stringify(recovery)],
    );
  }

  async attachAsset(runId: string, owner: string, n: number, asset: NewAsset, progress: number): Promise<boolean> {
    const sha256 = createHash('sha256').update(asset.bytes).digest('hex');
    return this.tx(async (client) => {
      const row = await this.held(client, runId, owner);
      if (row === null) return false;
      const now = this.now();
      await client.query('INSERT INTO assets (sha256, mime, size, bytes, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [
        sha256,
        asset.mime,
        asset.bytes.byteLength,
        Buffer.from(asset.bytes.buffer, asset.bytes.byteOffset, asset.bytes.byteLength),
        now,
      ]);
      await client.query(
        `INSERT INTO run_assets (run_id, n, sha256, meta) VALUES ($1, $2, $3, $4)
         ON CONFLICT (run_id, n) DO UPDATE SET sha256 = excluded.sha256, meta = excluded.meta`,
        [runId, n, sha256, JSON.stringify(asset.meta)],
      );
      await client.query('UPDATE runs SET progress = GREATEST(progress, $1), lease_expires_at = $2, progressed_at = $3, updated_at = $3 WHERE id = $4', [
        progress,
        now + this.leaseMs,
        now,
        runId,
      ]);
      this.changed(client, runId, row.phase);
      return true;
    });
  }

  async finish(runId: string, owner: string, result: JsonObject, charge?: ChargeSource, durable = true): Promise<Run | null> {
    return this.heldTransition(runId, owner, Phase.done, { result, charge }, durable);
  }

  async fail(runId: string, owner: string, error: RunError): Promise<Run | null> {
    return this.heldTransition(runId, owner, Phase.failed, { error });
  }

  private async heldTransition(runId: string, owner: string, to: Phase, data: TransitionData, durable = true): Promise<Run | null> {
    return this.tx(async (client) => {
      if (!durable) await client.query('SET LOCAL synchronous_commit = off');
      const row = await this.held(client, runId, owner);
      return row === null ? null : this.transition(client, row, to, data);
    });
  }

  /** One forward move, its timestamp, its recovery point and (on done) the charge. Inside a transaction. */
  private async transition(client: Client, row: RunRowWithArgs, to: Phase, data: TransitionData): Promise<Run> {
    const now = this.now();
    const next = nextRunState(row, to, now, this.leaseMs, data.error);
    await client.query(
      `UPDATE runs SET phase = $1, progress = $2, composing_at = $3, rendering_at = $4, ended_at = $5, error = $6,
         lease_expires_at = $7, lease_owner = CASE WHEN $8 THEN lease_owner ELSE NULL END, progressed_at = $9, updated_at = $10
       WHERE id = $11`,
      [next.phase, next.progress, next.composing_at, next.rendering_at, next.ended_at, next.error, next.lease_expires_at, next.keepLease, next.progressed_at, next.updated_at, row.id],
    );
    if (data.result !== undefined) {
      await client.query(
        `INSERT INTO run_data (run_id, result) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET result = excluded.result, recovery = NULL`,
        [row.id, JSON.stringify(data.result)],
      );
    } else if (next.dropRecovery) {
      await client.query('UPDATE run_data SET recovery = NULL WHERE run_id = $1', [row.id]);
    } else if (data.output !== undefined) {
      await this.patchRecovery(client, row.id, { [row.phase]: data.output });
    }
    if (next.charge) {
      await client.query(
        `INSERT INTO charges (run_id, tenant, tool, credits, provider, model, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
        [row.id, row.tenant, row.tool, row.cost, data.charge?.provider ?? null, data.charge?.model ?? null, now],
      );
      failpoint('billing', row.tool);
    }
    this.changed(client, row.id, next.phase);
    return this.fullRun((await this.byId(client, row.id))!, client);
  }

  // ---- the caller's verbs --------------------------------------------------------------------

  async cancel(tenant: string, runId: string): Promise<{ run: Run; outcome: CancelOutcome }> {
    return this.tx(async (client) => {
      const row = await this.visible(client, tenant, runId, 'FOR UPDATE');
      const decision = cancelDecision(row.phase);
      if (decision !== 'cancel') return { run: await this.fullRun(row, client), outcome: decision };
      return { run: await this.transition(client, row, Phase.canceled, {}), outcome: 'canceled' as const };
    });
  }

  async deleteRun(tenant: string, runId: string): Promise<void> {
    const shas = await this.tx(async (client) => {
      const row = await this.visible(client, tenant, runId, 'FOR UPDATE');
      if (isTerminal(row.phase)) this.changed(client, runId, row.phase);
      else await this.transition(client, row, Phase.canceled, {});
      const now = this.now();
      await client.query(`UPDATE runs SET deleted_at = $1, updated_at = $1, lease_owner = NULL, lease_expires_at = NULL, args = '{}' WHERE id = $2`, [now, runId]);
      await client.query('DELETE FROM run_data WHERE run_id = $1', [runId]);
      const { rows } = await client.query<{ sha256: string }>('DELETE FROM run_assets WHERE run_id = $1 RETURNING sha256', [runId]);
      return rows.map((r) => r.sha256);
    });
    this.finishedResults.delete(runId);
    await this.dropOrphanAssets(shas);
  }

  /**
   * Deletes the bytes no run links to any more. Apart from the transaction that unlinked them: a
   * replica attaching the same bytes at that moment makes this delete fail on the foreign key, and
   * the bytes stay, which is right.
   */
  private async dropOrphanAssets(shas: string[] | null): Promise<number> {
    if (shas !== null && shas.length === 0) return 0;
    try {
      const { rowCount } = await this.pool.query(
        `DELETE FROM assets a WHERE ${shas === null ? 'TRUE' : 'a.sha256 = ANY($1)'}
           AND NOT EXISTS (SELECT 1 FROM run_assets ra WHERE ra.sha256 = a.sha256)`,
        shas === null ? [] : [shas],
      );
      return rowCount ?? 0;
    } catch (err) {
      if ((err as { code?: string }).code === '23503') return 0;
      throw storageError(err, this.url);
    }
  }

  async usage(tenant: string): Promise<Usage> {
    await this.replays.flush();
    return this.guard(async () => {
      const usage: Usage = { tenant, runs: 0, charges: 0, credits: 0, replaysAbsorbed: 0, byTool: {}, byProvider: {} };
      const forTool = (tool: string) => (usage.byTool[tool] ??= { runs: 0, charges: 0, credits: 0, replaysAbsorbed: 0 });
      const runs = await this.pool.query<{ tool: string; runs: number; replays: number }>(
        `SELECT r.tool, COUNT(*) AS runs, COALESCE(SUM(rr.count), 0)::bigint AS replays
         FROM runs r LEFT JOIN run_replays rr ON rr.run_id = r.id WHERE r.tenant = $1 GROUP BY r.tool`,
        [tenant],
      );
      for (const r of runs.rows) {
        Object.assign(forTool(r.tool), { runs: r.runs, replaysAbsorbed: r.replays });
        usage.runs += r.runs;
        usage.replaysAbsorbed += r.replays;
      }
      const charges = await this.pool.query<{ tool: string; provider: string; charges: number; credits: number }>(
        `SELECT tool, COALESCE(provider, 'unknown') AS provider, COUNT(*) AS charges, COALESCE(SUM(credits), 0)::bigint AS credits
         FROM charges WHERE tenant = $1 GROUP BY 1, 2`,
        [tenant],
      );
      for (const c of charges.rows) {
        const tool = forTool(c.tool);
        tool.charges += c.charges;
        tool.credits += c.credits;
        const provider = (usage.byProvider[c.provider] ??= { charges: 0, credits: 0 });
        provider.charges += c.charges;
        provider.credits += c.credits;
        usage.charges += c.charges;
        usage.credits += c.credits;
      }
      return usage;
    });
  }

  // ---- housekeeping --------------------------------------------------------------------------

  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { runsForgotten: 0, assetsRemoved: 0 };
    const cutoff = this.now() - this.retentionMs;
    for (;;) {
      const forgotten = await this.tx(async (client) => {
        const { rows } = await client.query<{ id: string }>(
          `SELECT id FROM runs WHERE created_at <= $1 AND (${TERMINAL} OR deleted_at IS NOT NULL) LIMIT ${SWEEP_SLICE} FOR UPDATE SKIP LOCKED`,
          [cutoff],
        );
        await this.forgetRuns(client, rows.map((r) => r.id));
        return rows.length;
      });
      report.runsForgotten += forgotten;
      if (forgotten < SWEEP_SLICE) break;
    }
    if (report.runsForgotten > 0) report.assetsRemoved = await this.dropOrphanAssets(null);
    await this.guard(() => this.eventsPool.query('DELETE FROM events WHERE created_at <= $1', [this.now() - EVENT_RETENTION_MS]));
    return report;
  }

  /** Deletes runs with their data and asset links. Inside a transaction; the bytes go in dropOrphanAssets. */
  private async forgetRuns(client: Client, runIds: string[]): Promise<void> {
    if (runIds.length === 0) return;
    await client.query('DELETE FROM run_assets WHERE run_id = ANY($1)', [runIds]);
    await client.query('DELETE FROM runs WHERE id = ANY($1)', [runIds]);
    for (const id of runIds) {
      this.replays.forget(id);
      this.finishedResults.delete(id);
    }
  }

  // ---- stream events -------------------------------------------------------------------------

  async appendEvent(scope: string, streamId: string, message: string): Promise<string> {
    return this.guard(async () => {
      const { rows } = await this.eventsPool.query<{ id: number }>(
        'INSERT INTO events (session_id, stream_id, message, created_at) VALUES ($1, $2, $3, $4) RETURNING id',
        [scope, streamId, message, this.now()],
      );
      return String(rows[0]!.id);
    });
  }

  async eventStreamOf(scope: string, eventId: string): Promise<string | null> {
    const id = Number(eventId);
    if (!Number.isSafeInteger(id)) return null;
    return this.guard(async () => {
      const { rows } = await this.pool.query<{ stream_id: string }>('SELECT stream_id FROM events WHERE id = $1 AND session_id = $2', [id, scope]);
      return rows[0]?.stream_id ?? null;
    });
  }

  async eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]> {
    const after = afterEventId === null ? 0 : Number(afterEventId);
    if (!Number.isSafeInteger(after)) return [];
    return this.guard(async () => {
      const { rows } = await this.pool.query<{ id: number; stream_id: string; message: string }>(
        'SELECT id, stream_id, message FROM events WHERE session_id = $1 AND stream_id = $2 AND id > $3 ORDER BY id',
        [scope, streamId, after],
      );
      return rows.map((e) => ({ id: String(e.id), streamId: e.stream_id, message: e.message }));
    });
  }

  async ping(): Promise<void> {
    await this.guard(() => this.pool.query('SELECT 1'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.replays.close().catch(() => undefined);
    this.closed = true;
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => undefined);
    await this.announcer.idle();
    await Promise.all([this.pool.end(), this.eventsPool.end(), this.announcePool.end()]);
  }
}

interface TransitionData {
  output?: JsonObject | undefined;
  result?: JsonObject;
  charge?: ChargeSource | undefined;
  error?: RunError;
}
