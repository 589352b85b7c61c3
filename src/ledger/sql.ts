// The storage primitives in SQL, written once for both databases (as Kysely keeps one query layer over
// small drivers): a store supplies a driver, which runs a statement and says what its dialect writes
// differently, and gets every primitive of the LedgerStore port.
import { LIVE_PHASES, Phase, sqlPhaseList, TERMINAL_PHASES } from './phases.js';
import type {
  AssetRow,
  Awaitable,
  ChargeRow,
  CheckedListQuery,
  DeliveryRow,
  JobRow,
  RunKey,
  RunRecord,
  StoreOps,
  StoredRun,
  UsageRows,
} from './store.js';
import type { AssetRef, Executor, JsonObject, RecoveryPoints, StoredAsset } from './types.js';

export interface SqlDialect {
  /** Appended to a read that a write transaction must hold: PostgreSQL locks rows; SQLite's writer holds the file. */
  forUpdate: string;
  /** The same for a claim, which should pass over rows another transaction holds. */
  forUpdateSkipLocked: string;
  /** A subquery of the members of a JSON array parameter. */
  jsonList(param: string): string;
  /** A subquery of `(id, n)` pairs from a JSON array of pairs. */
  jsonPairs(param: string): string;
  /** A result's JSON as it is stored, and back. */
  packResult(json: string): unknown;
  unpackResult(stored: unknown): JsonObject | null;
  isForeignKeyViolation(err: unknown): boolean;
}

/** What a store gives the query layer. Statements are written with `?` placeholders. */
export interface SqlDriver {
  readonly dialect: SqlDialect;
  /** The rows a statement returns, each as an array in the order selected. */
  rows(sql: string, params: readonly unknown[]): Awaitable<unknown[][]>;
  /** How many rows a statement changed. */
  run(sql: string, params: readonly unknown[]): Awaitable<number>;
}

const LIVE = `phase IN (${sqlPhaseList(LIVE_PHASES)})`;
const TERMINAL = `phase IN (${sqlPhaseList(TERMINAL_PHASES)})`;
const CANCELED = sqlPhaseList([Phase.canceled]);
/** What changes over a run's life, in the order records are read and written. */
const STATE =
  'phase, progress, composing_at, rendering_at, ended_at, error, attempts, stalls, lease_owner, lease_expires_at, updated_at, deleted_at';
/** What the fence reads for a key: the caller knows the key itself. */
export const KEYED_COLUMNS = `id, fingerprint, cost, created_at, ${STATE}`;
const RUN = `${KEYED_COLUMNS}, tenant, executor, tool, idem_key, args`;

/** A record from a row in the order of RUN (KEYED_COLUMNS and, unless `key` is given, the key's columns). */
function recordOf(v: unknown[], key?: RunKey): RunRecord {
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
    error: v[9] === null ? null : JSON.parse(v[9] as string),
    attempts: v[10] as number,
    stalls: v[11] as number,
    leaseOwner: v[12] as string | null,
    leaseExpiresAt: v[13] as number | null,
    updatedAt: v[14] as number,
    deletedAt: v[15] as number | null,
  };
}

const JOB = 'run_id, provider, job_id, fields, created_at, cancel_requested_at';
const jobRow = (v: unknown[]): JobRow => ({
  runId: v[0] as string,
  provider: v[1] as string,
  jobId: v[2] as string,
  fields: JSON.parse(v[3] as string) as Record<string, string>,
  createdAt: v[4] as number,
  cancelRequestedAt: v[5] as number | null,
});
const DELIVERY = 'provider, webhook_id, run_id, job_id, status, received_at';
const deliveryRow = (v: unknown[]): DeliveryRow => ({
  provider: v[0] as string,
  webhookId: v[1] as string,
  runId: v[2] as string,
  jobId: v[3] as string | null,
  status: v[4] as string | null,
  receivedAt: v[5] as number,
});

const storedRun = (v: unknown[]): StoredRun => ({ ...recordOf(v), args: JSON.parse(v[20] as string) as JsonObject });
const parseJson = (text: unknown): JsonObject | null =>
  text == null ? null : (JSON.parse(text as string) as JsonObject);
const state = (r: RunRecord): unknown[] => [
  r.phase,
  r.progress,
  r.composingAt,
  r.renderingAt,
  r.endedAt,
  r.error === null ? null : JSON.stringify(r.error),
  r.attempts,
  r.stalls,
  r.leaseOwner,
  r.leaseExpiresAt,
  r.updatedAt,
  r.deletedAt,
];

/** The primitives, on a connection (each statement its own transaction) or inside a write transaction. */
export class SqlOps implements StoreOps {
  private readonly d: SqlDialect;

  constructor(
    private readonly db: SqlDriver,
    private readonly inTransaction: boolean,
  ) {
    this.d = db.dialect;
  }

  private async first(sql: string, params: readonly unknown[]): Promise<unknown[] | undefined> {
    return (await this.db.rows(sql, params))[0];
  }

  async runByKey(key: RunKey): Promise<RunRecord | undefined> {
    const row = await this.first(
      `SELECT ${KEYED_COLUMNS} FROM runs WHERE tenant = ? AND executor = ? AND tool = ? AND idem_key = ?`,
      [key.tenant, key.executor, key.tool, key.idempotencyKey],
    );
    return row === undefined ? undefined : recordOf(row, key);
  }

  async runById(id: string, lock = false): Promise<StoredRun | undefined> {
    const row = await this.first(`SELECT ${RUN} FROM runs WHERE id = ?${lock ? this.d.forUpdate : ''}`, [id]);
    return row === undefined ? undefined : storedRun(row);
  }

  async insertRun(r: RunRecord, args: JsonObject): Promise<boolean> {
    const inserted = await this.db.run(
      `INSERT INTO runs (id, tenant, executor, tool, idem_key, fingerprint, cost, args, created_at, ${STATE})
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, executor, tool, idem_key) DO NOTHING`,
      [
        r.id,
        r.tenant,
        r.executor,
        r.tool,
        r.idempotencyKey,
        r.fingerprint,
        r.cost,
        JSON.stringify(args),
        r.createdAt,
        ...state(r),
      ],
    );
    return inserted === 1;
  }

  async writeRun(r: RunRecord): Promise<void> {
    await this.db.run(`UPDATE runs SET (${STATE}) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id = ?`, [
      ...state(r),
      r.id,
    ]);
  }

  async argsOf(id: string): Promise<JsonObject> {
    return parseJson((await this.first('SELECT args FROM runs WHERE id = ?', [id]))?.[0]) ?? {};
  }

  async resultOf(id: string): Promise<JsonObject | null> {
    return this.d.unpackResult((await this.first('SELECT result FROM run_data WHERE run_id = ?', [id]))?.[0]);
  }

  async recoveryOf(id: string): Promise<RecoveryPoints> {
    return parseJson((await this.first('SELECT recovery FROM run_data WHERE run_id = ?', [id]))?.[0]) ?? {};
  }

  async putRecovery(id: string, points: RecoveryPoints | null): Promise<void> {
    if (points === null) await this.db.run('UPDATE run_data SET recovery = NULL WHERE run_id = ?', [id]);
    else
      await this.db.run(
        'INSERT INTO run_data (run_id, recovery) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET recovery = excluded.recovery',
        [id, JSON.stringify(points)],
      );
  }

  async putResult(id: string, resultJson: string): Promise<void> {
    await this.db.run(
      'INSERT INTO run_data (run_id, result) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET result = excluded.result, recovery = NULL',
      [id, this.d.packResult(resultJson)],
    );
  }

  async charge(c: ChargeRow): Promise<void> {
    await this.db.run(
      'INSERT INTO charges (run_id, tenant, tool, credits, provider, model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      [c.runId, c.tenant, c.tool, c.credits, c.provider, c.model, c.at],
    );
  }

  async attachAsset(runId: string, n: number, asset: AssetRow, at: number): Promise<void> {
    const bytes = Buffer.from(asset.bytes.buffer, asset.bytes.byteOffset, asset.bytes.byteLength);
    await this.db.run(
      'INSERT INTO assets (sha256, mime, size, bytes, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      [asset.sha256, asset.mime, bytes.byteLength, bytes, at],
    );
    await this.db.run(
      'INSERT INTO run_assets (run_id, n, sha256, meta) VALUES (?, ?, ?, ?) ON CONFLICT (run_id, n) DO UPDATE SET sha256 = excluded.sha256, meta = excluded.meta',
      [runId, n, asset.sha256, JSON.stringify(asset.meta)],
    );
  }

  async assetsOf(runId: string): Promise<AssetRef[]> {
    const rows = await this.db.rows(
      'SELECT ra.n, ra.sha256, a.mime, a.size, ra.meta FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = ? ORDER BY ra.n',
      [runId],
    );
    return rows.map(
      ([n, sha256, mime, size, meta]) => ({ n, sha256, mime, size, meta: JSON.parse(meta as string) }) as AssetRef,
    );
  }

  async assetBytes(runId: string, n: number): Promise<StoredAsset | undefined> {
    const row = await this.first(
      'SELECT a.sha256, a.mime, a.bytes FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = ? AND ra.n = ?',
      [runId, n],
    );
    return row === undefined ? undefined : ({ sha256: row[0], mime: row[1], bytes: row[2] } as StoredAsset);
  }

  async clearRun(id: string): Promise<string[]> {
    await this.db.run(`UPDATE runs SET args = '{}' WHERE id = ?`, [id]);
    await this.db.run('DELETE FROM run_data WHERE run_id = ?', [id]);
    return (await this.db.rows('DELETE FROM run_assets WHERE run_id = ? RETURNING sha256', [id])).map(
      (r) => r[0] as string,
    );
  }

  async deleteRuns(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const list = JSON.stringify(ids);
    const unlinked = await this.db.rows(
      `DELETE FROM run_assets WHERE run_id IN (${this.d.jsonList('?')}) RETURNING sha256`,
      [list],
    );
    await this.db.run(`DELETE FROM runs WHERE id IN (${this.d.jsonList('?')})`, [list]);
    return unlinked.map((r) => r[0] as string);
  }

  /**
   * Another process attaching the same bytes at this moment makes this delete fail on the foreign
   * key, and the bytes stay, which is right; a savepoint keeps that from failing the transaction.
   */
  async dropOrphanAssets(sha256s: readonly string[]): Promise<number> {
    if (sha256s.length === 0) return 0;
    if (this.inTransaction) await this.db.run('SAVEPOINT orphans', []);
    try {
      const dropped = await this.db.run(
        `DELETE FROM assets WHERE sha256 IN (${this.d.jsonList('?')}) AND NOT EXISTS (SELECT 1 FROM run_assets ra WHERE ra.sha256 = assets.sha256)`,
        [JSON.stringify([...new Set(sha256s)])],
      );
      if (this.inTransaction) await this.db.run('RELEASE SAVEPOINT orphans', []);
      return dropped;
    } catch (err) {
      if (!this.d.isForeignKeyViolation(err)) throw err;
      if (this.inTransaction) await this.db.run('ROLLBACK TO SAVEPOINT orphans', []);
      return 0;
    }
  }

  async nextClaimable(
    now: number,
    executor: Executor,
    tools: readonly string[] | undefined,
  ): Promise<StoredRun | undefined> {
    const only = tools === undefined ? '' : `AND tool IN (${this.d.jsonList('?')})`;
    const row = await this.first(
      `SELECT ${RUN} FROM runs WHERE ${LIVE} AND executor = ? AND (lease_expires_at IS NULL OR lease_expires_at <= ?) ${only}
       ORDER BY created_at, id LIMIT 1${this.d.forUpdateSkipLocked}`,
      tools === undefined ? [executor, now] : [executor, now, JSON.stringify(tools)],
    );
    return row === undefined ? undefined : storedRun(row);
  }

  async page(tenant: string, q: CheckedListQuery): Promise<StoredRun[]> {
    const where = ['tenant = ?', 'deleted_at IS NULL'];
    const params: unknown[] = [tenant];
    const and = (clause: string, ...values: unknown[]) => where.push(clause) && params.push(...values);
    if (q.tool !== undefined) and('tool = ?', q.tool);
    if (q.phase !== undefined) and('phase = ?', q.phase);
    if (q.before !== undefined)
      and('(created_at < ? OR (created_at = ? AND id < ?))', q.before.createdAt, q.before.createdAt, q.before.id);
    const rows = await this.db.rows(
      `SELECT ${RUN} FROM runs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`,
      [...params, q.limit + 1],
    );
    return rows.map(storedRun);
  }

  async usageRows(tenant: string): Promise<UsageRows> {
    const runs = await this.db.rows(
      `SELECT r.tool, COUNT(*), COALESCE(SUM(rr.count), 0) FROM runs r LEFT JOIN run_replays rr ON rr.run_id = r.id WHERE r.tenant = ? GROUP BY r.tool`,
      [tenant],
    );
    const charges = await this.db.rows(
      `SELECT tool, COALESCE(provider, 'unknown'), COUNT(*), COALESCE(SUM(credits), 0) FROM charges WHERE tenant = ? GROUP BY 1, 2`,
      [tenant],
    );
    return {
      runs: runs.map(([tool, n, replays]) => ({ tool, runs: n, replays }) as UsageRows['runs'][number]),
      charges: charges.map(
        ([tool, provider, n, credits]) => ({ tool, provider, charges: n, credits }) as UsageRows['charges'][number],
      ),
    };
  }

  async expiredIds(cutoff: number, limit: number): Promise<string[]> {
    const rows = await this.db.rows(
      `SELECT id FROM runs WHERE created_at <= ? AND (${TERMINAL} OR deleted_at IS NOT NULL) LIMIT ?${this.d.forUpdateSkipLocked}`,
      [cutoff, limit],
    );
    return rows.map((r) => r[0] as string);
  }

  async heldRuns(now: number): Promise<{ id: string; owner: string }[]> {
    const rows = await this.db.rows(
      `SELECT id, lease_owner FROM runs WHERE ${LIVE} AND lease_owner IS NOT NULL AND lease_expires_at > ?`,
      [now],
    );
    return rows.map(([id, owner]) => ({ id: id as string, owner: owner as string }));
  }

  async addReplays(counts: readonly (readonly [string, number])[]): Promise<void> {
    // A run forgotten since its replays were counted takes its count with it.
    await this.db.run(
      `INSERT INTO run_replays (run_id, count) SELECT c.id, c.n FROM (${this.d.jsonPairs('?')}) c WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = c.id)
       ON CONFLICT (run_id) DO UPDATE SET count = run_replays.count + excluded.count`,
      [JSON.stringify(counts)],
    );
  }

  // ---- jobs at job providers, and their webhooks ------------------------------------------------

  async insertJob(j: JobRow): Promise<boolean> {
    // Either unique constraint (one job a run; one run a job) leaves the row unwritten.
    const inserted = await this.db.run(
      `INSERT INTO run_jobs (${JOB}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      [j.runId, j.provider, j.jobId, JSON.stringify(j.fields), j.createdAt, j.cancelRequestedAt],
    );
    return inserted === 1;
  }

  async jobOf(runId: string): Promise<JobRow | undefined> {
    const row = await this.first(`SELECT ${JOB} FROM run_jobs WHERE run_id = ?`, [runId]);
    return row === undefined ? undefined : jobRow(row);
  }

  async jobByProviderId(provider: string, jobId: string): Promise<JobRow | undefined> {
    const row = await this.first(`SELECT ${JOB} FROM run_jobs WHERE provider = ? AND job_id = ?`, [provider, jobId]);
    return row === undefined ? undefined : jobRow(row);
  }

  async markJobCancel(runId: string, at: number): Promise<boolean> {
    return (
      (await this.db.run(
        'UPDATE run_jobs SET cancel_requested_at = ? WHERE run_id = ? AND cancel_requested_at IS NULL',
        [at, runId],
      )) === 1
    );
  }

  async jobsToCancel(limit: number): Promise<JobRow[]> {
    const rows = await this.db.rows(
      `SELECT ${JOB.split(', ')
        .map((c) => `j.${c}`)
        .join(', ')} FROM run_jobs j JOIN runs r ON r.id = j.run_id
       WHERE j.cancel_requested_at IS NULL AND r.phase = ${CANCELED} ORDER BY j.created_at LIMIT ?`,
      [limit],
    );
    return rows.map(jobRow);
  }

  async insertDelivery(d: DeliveryRow): Promise<boolean> {
    const inserted = await this.db.run(
      `INSERT INTO webhook_deliveries (${DELIVERY}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      [d.provider, d.webhookId, d.runId, d.jobId, d.status, d.receivedAt],
    );
    return inserted === 1;
  }

  async deliveriesOf(runId: string, limit: number): Promise<DeliveryRow[]> {
    const rows = await this.db.rows(
      `SELECT ${DELIVERY} FROM webhook_deliveries WHERE run_id = ? ORDER BY received_at DESC, webhook_id LIMIT ?`,
      [runId, limit],
    );
    return rows.map(deliveryRow);
  }
}
