// The shared store for deployments with several replicas: one PostgreSQL database, whose unique
// constraint fences duplicate calls across every replica. Its capability: announcing committed changes
// to the other replicas and hearing theirs (announcer.ts says why after the commit, not inside it).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { RunledgerError, StorageUnavailableError } from '../../errors.js';
import { Ledger, type LedgerOptions } from '../ledger.js';
import { migrate } from '../migrations.js';
import { LIVE_PHASES, type Phase, sqlPhaseList, TERMINAL_PHASES } from '../phases.js';
import type { CheckedListQuery } from '../rules.js';
import type { AssetRow, Awaitable, ChargeRow, LedgerStore, RunKey, RunRecord, StoreOps, StoredRun, UsageRows } from '../store.js';
import type { AssetRef, Executor, JsonObject, RecoveryPoints, RunChange, StoredAsset } from '../types.js';
import { Announcer, heardChanges } from './announcer.js';
import { describeUrl, storageError } from './errors.js';
import { PostgresEvents } from './events.js';

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// URL; a `schema` query parameter picks the schema. */
  url: string;
  /** The schema holding the tables (created if missing); default the URL's, else "runledger". */
  schema?: string | undefined;
  /** Most connections this process opens for runs (one more listens, one announces, one writes stream events). */
  poolSize?: number | undefined;
}

type Db = pg.Pool | pg.PoolClient;

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;
const LIVE = `phase IN (${sqlPhaseList(LIVE_PHASES)})`;
const TERMINAL = `phase IN (${sqlPhaseList(TERMINAL_PHASES)})`;
/** Taken (per transaction) while migrating, so replicas that start together migrate one at a time. */
const MIGRATION_LOCK = 0x72756e6c; // "runl"
const STATE = 'phase, progress, composing_at, rendering_at, ended_at, error, attempts, stalls, lease_owner, lease_expires_at, updated_at, deleted_at';
/** What the fence reads for a key (the caller knows the key itself); the benchmark's raw lookup reads the same. */
export const KEYED_COLUMNS = `id, fingerprint, cost, created_at, ${STATE}`;
const KEYED = KEYED_COLUMNS;
const RUN = `${KEYED}, tenant, executor, tool, idem_key, args`;

/**
 * BIGINT (and COUNT) as JS numbers: times are milliseconds, far inside the exact range. Set per pool,
 * so no other user of `pg` in the process is affected.
 */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

interface Row {
  [column: string]: unknown;
}

function recordOf(r: Row, key?: RunKey): RunRecord {
  return {
    id: r.id as string,
    tenant: key?.tenant ?? (r.tenant as string),
    executor: key?.executor ?? (r.executor as Executor),
    tool: key?.tool ?? (r.tool as string),
    idempotencyKey: key?.idempotencyKey ?? (r.idem_key as string),
    fingerprint: r.fingerprint as string,
    cost: r.cost as number,
    createdAt: r.created_at as number,
    phase: r.phase as Phase,
    progress: r.progress as number,
    composingAt: r.composing_at as number | null,
    renderingAt: r.rendering_at as number | null,
    endedAt: r.ended_at as number | null,
    error: r.error === null ? null : JSON.parse(r.error as string),
    attempts: r.attempts as number,
    stalls: r.stalls as number,
    leaseOwner: r.lease_owner as string | null,
    leaseExpiresAt: r.lease_expires_at as number | null,
    updatedAt: r.updated_at as number,
    deletedAt: r.deleted_at as number | null,
  };
}

const storedRun = (r: Row): StoredRun => ({ ...recordOf(r), args: JSON.parse(r.args as string) as JsonObject });
const parseJson = (text: unknown): JsonObject | null => (text == null ? null : (JSON.parse(text as string) as JsonObject));
const state = (r: RunRecord) => [
  r.phase, r.progress, r.composingAt, r.renderingAt, r.endedAt, r.error === null ? null : JSON.stringify(r.error),
  r.attempts, r.stalls, r.leaseOwner, r.leaseExpiresAt, r.updatedAt, r.deletedAt,
];

/** The primitives as statements on a pool (each its own transaction) or on one transaction's client. */
class PostgresOps implements StoreOps {
  constructor(
    private readonly db: Db,
    private readonly inTransaction: boolean,
  ) {}

  private async rows(text: string, values: unknown[], name?: string): Promise<Row[]> {
    return (await this.db.query<Row>(name === undefined ? { text, values } : { name, text, values })).rows;
  }

  async runByKey(key: RunKey): Promise<RunRecord | undefined> {
    const [row] = await this.rows(`SELECT ${KEYED} FROM runs WHERE tenant = $1 AND executor = $2 AND tool = $3 AND idem_key = $4`, [key.tenant, key.executor, key.tool, key.idempotencyKey], 'keyed');
    return row === undefined ? undefined : recordOf(row, key);
  }

  async runById(id: string, lock = false): Promise<StoredRun | undefined> {
    const [row] = await this.rows(`SELECT ${RUN} FROM runs WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id], lock ? 'by-id-locked' : 'by-id');
    return row === undefined ? undefined : storedRun(row);
  }

  async insertRun(r: RunRecord, args: JsonObject): Promise<boolean> {
    const { rowCount } = await this.db.query({
      name: 'insert-run',
      text: `INSERT INTO runs (id, tenant, executor, tool, idem_key, fingerprint, cost, args, created_at, ${STATE})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
             ON CONFLICT (tenant, executor, tool, idem_key) DO NOTHING`,
      values: [r.id, r.tenant, r.executor, r.tool, r.idempotencyKey, r.fingerprint, r.cost, JSON.stringify(args), r.createdAt, ...state(r)],
    });
    return rowCount === 1;
  }

  async writeRun(r: RunRecord): Promise<void> {
    await this.rows(`UPDATE runs SET (${STATE}) = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) WHERE id = $13`, [...state(r), r.id], 'write-run');
  }

  async argsOf(id: string): Promise<JsonObject> {
    return parseJson((await this.rows('SELECT args FROM runs WHERE id = $1', [id]))[0]?.args) ?? {};
  }

  async resultOf(id: string): Promise<JsonObject | null> {
    return parseJson((await this.rows('SELECT result FROM run_data WHERE run_id = $1', [id], 'result'))[0]?.result);
  }

  async recoveryOf(id: string): Promise<RecoveryPoints> {
    return parseJson((await this.rows('SELECT recovery FROM run_data WHERE run_id = $1', [id]))[0]?.recovery) ?? {};
  }

  async putRecovery(id: string, points: RecoveryPoints | null): Promise<void> {
    if (points === null) await this.rows('UPDATE run_data SET recovery = NULL WHERE run_id = $1', [id]);
    else await this.rows(`INSERT INTO run_data (run_id, recovery) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET recovery = excluded.recovery`, [id, JSON.stringify(points)]);
  }

  async putResult(id: string, resultJson: string): Promise<void> {
    await this.rows(`INSERT INTO run_data (run_id, result) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET result = excluded.result, recovery = NULL`, [id, resultJson]);
  }

  async charge(c: ChargeRow): Promise<void> {
    await this.rows(
      `INSERT INTO charges (run_id, tenant, tool, credits, provider, model, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
      [c.runId, c.tenant, c.tool, c.credits, c.provider, c.model, c.at],
    );
  }

  async attachAsset(runId: string, n: number, asset: AssetRow, at: number): Promise<void> {
    const bytes = Buffer.from(asset.bytes.buffer, asset.bytes.byteOffset, asset.bytes.byteLength);
    await this.rows('INSERT INTO assets (sha256, mime, size, bytes, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [asset.sha256, asset.mime, bytes.byteLength, bytes, at]);
    await this.rows(
      `INSERT INTO run_assets (run_id, n, sha256, meta) VALUES ($1, $2, $3, $4) ON CONFLICT (run_id, n) DO UPDATE SET sha256 = excluded.sha256, meta = excluded.meta`,
      [runId, n, asset.sha256, JSON.stringify(asset.meta)],
    );
  }

  async assetsOf(runId: string): Promise<AssetRef[]> {
    const rows = await this.rows(`SELECT ra.n, ra.sha256, a.mime, a.size, ra.meta FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = $1 ORDER BY ra.n`, [runId]);
    return rows.map((r) => ({ n: r.n as number, sha256: r.sha256 as string, mime: r.mime as string, size: r.size as number, meta: JSON.parse(r.meta as string) as JsonObject }));
  }

  async assetBytes(runId: string, n: number): Promise<StoredAsset | undefined> {
    const [row] = await this.rows(`SELECT a.sha256, a.mime, a.bytes FROM run_assets ra JOIN assets a USING (sha256) WHERE ra.run_id = $1 AND ra.n = $2`, [runId, n]);
    return row as StoredAsset | undefined;
  }

  async clearRun(id: string): Promise<string[]> {
    await this.rows(`UPDATE runs SET args = '{}' WHERE id = $1`, [id]);
    await this.rows('DELETE FROM run_data WHERE run_id = $1', [id]);
    return (await this.rows('DELETE FROM run_assets WHERE run_id = $1 RETURNING sha256', [id])).map((r) => r.sha256 as string);
  }

  async deleteRuns(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const unlinked = await this.rows('DELETE FROM run_assets WHERE run_id = ANY($1) RETURNING sha256', [ids]);
    await this.rows('DELETE FROM runs WHERE id = ANY($1)', [ids]);
    return unlinked.map((r) => r.sha256 as string);
  }

  /**
   * A replica attaching the same bytes at this moment makes this delete fail on the foreign key, and
   * the bytes stay, which is right; inside a transaction, a savepoint keeps that from failing it.
   */
  async dropOrphanAssets(sha256s: readonly string[]): Promise<number> {
    if (sha256s.length === 0) return 0;
    if (this.inTransaction) await this.db.query('SAVEPOINT orphans');
    try {
      const { rowCount } = await this.db.query(
        'DELETE FROM assets a WHERE a.sha256 = ANY($1) AND NOT EXISTS (SELECT 1 FROM run_assets ra WHERE ra.sha256 = a.sha256)',
        [[...new Set(sha256s)]],
      );
      if (this.inTransaction) await this.db.query('RELEASE SAVEPOINT orphans');
      return rowCount ?? 0;
    } catch (err) {
      if ((err as { code?: string }).code !== '23503') throw err;
      if (this.inTransaction) await this.db.query('ROLLBACK TO SAVEPOINT orphans');
      return 0;
    }
  }

  async nextClaimable(now: number, executor: Executor, tools: readonly string[] | undefined): Promise<StoredRun | undefined> {
    // SKIP LOCKED: replicas claiming at once each take a different run instead of queueing on one.
    const [row] = await this.rows(
      `SELECT ${RUN} FROM runs WHERE ${LIVE} AND executor = $1 AND (lease_expires_at IS NULL OR lease_expires_at <= $2)
         ${tools === undefined ? '' : 'AND tool = ANY($3)'}
       ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`,
      tools === undefined ? [executor, now] : [executor, now, tools],
    );
    return row === undefined ? undefined : storedRun(row);
  }

  async page(tenant: string, q: CheckedListQuery): Promise<StoredRun[]> {
    const params: unknown[] = [tenant];
    const where = ['tenant = $1', 'deleted_at IS NULL'];
    const param = (value: unknown) => `$${params.push(value)}`;
    if (q.tool !== undefined) where.push(`tool = ${param(q.tool)}`);
    if (q.phase !== undefined) where.push(`phase = ${param(q.phase)}`);
    if (q.before !== undefined) {
      where.push(`(created_at < ${param(q.before.createdAt)} OR (created_at = ${param(q.before.createdAt)} AND id < ${param(q.before.id)}))`);
    }
    const sql = `SELECT ${RUN} FROM runs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ${param(q.limit + 1)}`;
    return (await this.rows(sql, params)).map(storedRun);
  }

  async usageRows(tenant: string): Promise<UsageRows> {
    const runs = await this.rows(
      `SELECT r.tool, COUNT(*) AS runs, COALESCE(SUM(rr.count), 0)::bigint AS replays
       FROM runs r LEFT JOIN run_replays rr ON rr.run_id = r.id WHERE r.tenant = $1 GROUP BY r.tool`,
      [tenant],
    );
    const charges = await this.rows(
      `SELECT tool, COALESCE(provider, 'unknown') AS provider, COUNT(*) AS charges, COALESCE(SUM(credits), 0)::bigint AS credits
       FROM charges WHERE tenant = $1 GROUP BY 1, 2`,
      [tenant],
    );
    return { runs: runs as UsageRows['runs'], charges: charges as UsageRows['charges'] };
  }

  async expiredIds(cutoff: number, limit: number): Promise<string[]> {
    const rows = await this.rows(
      `SELECT id FROM runs WHERE created_at <= $1 AND (${TERMINAL} OR deleted_at IS NOT NULL) LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [cutoff, limit],
    );
    return rows.map((r) => r.id as string);
  }

  async heldRuns(now: number): Promise<{ id: string; owner: string }[]> {
    const rows = await this.rows(`SELECT id, lease_owner FROM runs WHERE ${LIVE} AND lease_owner IS NOT NULL AND lease_expires_at > $1`, [now]);
    return rows.map((r) => ({ id: r.id as string, owner: r.lease_owner as string }));
  }

  async addReplays(counts: readonly (readonly [string, number])[]): Promise<void> {
    // A run forgotten since its replays were counted takes its count with it.
    await this.rows(
      `INSERT INTO run_replays (run_id, count)
       SELECT c.id, c.n FROM unnest($1::text[], $2::int[]) AS c(id, n) WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = c.id)
       ON CONFLICT (run_id) DO UPDATE SET count = run_replays.count + excluded.count`,
      [counts.map(([id]) => id), counts.map(([, n]) => n)],
    );
  }
}

export class PostgresStore implements LedgerStore {
  readonly location: string;
  readonly events: PostgresEvents;
  private readonly pool: pg.Pool;
  private readonly onPool: PostgresOps;
  private readonly announcer: Announcer;
  /** Announcements go out on their own connection, which does not wait for the WAL flush. */
  private readonly announcePool: pg.Pool;
  private readonly channel: string;
  private heard: (change: RunChange) => void = () => undefined;
  private listener: pg.Client | null = null;
  private closed = false;

  private constructor(
    private readonly url: string,
    private readonly schema: string,
    poolSize: number,
  ) {
    this.location = describeUrl(url, schema);
    this.channel = `runledger:${schema}`;
    const connection = { connectionString: url, types: TYPES, connectionTimeoutMillis: 5000 };
    // Statements are prepared once per connection, but planned on every run: a plan made generic while
    // a table was small (a sequential scan) would stay with it as it grows.
    this.pool = new pg.Pool({ ...connection, max: poolSize, options: `-c search_path=${schema} -c plan_cache_mode=force_custom_plan` });
    this.onPool = new PostgresOps(this.pool, false);
    // One connection: appends are inserted in the order they were made, so ids rise in that order.
    const eventsPool = new pg.Pool({ ...connection, max: 1, options: `-c search_path=${schema} -c synchronous_commit=off` });
    this.events = new PostgresEvents(eventsPool, this.pool, (err) => storageError(err, this.url));
    this.announcePool = new pg.Pool({ ...connection, max: 1, options: '-c synchronous_commit=off' });
    this.announcer = new Announcer(this.announcePool, this.channel, randomUUID());
    // An idle connection the server drops (a restart, pg_terminate_backend) must not take the process down:
    // the pool discards it and opens another when next needed.
    for (const pool of [this.pool, eventsPool, this.announcePool]) pool.on('error', () => undefined);
  }

  /** Connects, migrates (once, whichever replica gets there first) and starts listening for changes. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const parsed = new URL(opts.url);
    const schema = opts.schema ?? parsed.searchParams.get('schema') ?? 'runledger';
    if (!SCHEMA.test(schema)) {
      throw new StorageUnavailableError(`The PostgreSQL schema name "${schema}" is not usable: lower-case letters, digits and "_", at most 63.`, { schema });
    }
    parsed.searchParams.delete('schema');
    const store = new PostgresStore(parsed.toString(), schema, opts.poolSize ?? 10);
    try {
      await migrate('postgres', store.location, (body) => store.migrationStep(body));
      await store.listen();
    } catch (err) {
      await store.close().catch(() => undefined);
      throw storageError(err, store.url);
    }
    return store;
  }

  private async migrationStep(body: Parameters<Parameters<typeof migrate>[2]>[0]): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
      await body({
        exec: async (sql) => void (await client.query(sql)),
        versions: async () => (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
        record: async (version, name) => void (await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [version, name, Date.now()])),
      });
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
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
      for (const change of heardChanges(message.payload, this.announcer.origin)) this.heard(change);
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

  announce(changes: readonly RunChange[]): void {
    this.announcer.announce(changes);
  }

  onAnnounced(listener: (change: RunChange) => void): void {
    this.heard = listener;
  }

  read<T>(body: (ops: StoreOps) => Awaitable<T>): Promise<T> {
    return this.guard(async () => body(this.onPool));
  }

  /** A plain INSERT on its own: planned in microseconds, committed in one round trip. */
  fence(run: RunRecord, args: JsonObject): Promise<boolean> {
    return this.guard(() => this.onPool.insertRun(run, args));
  }

  /** Runs `body` in one transaction on one connection; a connection that failed is not reused. */
  async write<T>(body: (tx: StoreOps) => Promise<T>, opts: { durable?: boolean } = {}): Promise<T> {
    return this.guard(async () => {
      const client = await this.pool.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        if (opts.durable === false) await client.query('SET LOCAL synchronous_commit = off');
        const result = await body(new PostgresOps(client, true));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        broken = err instanceof RunledgerError ? undefined : err;
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release(broken instanceof Error ? broken : undefined);
      }
    });
  }

  async ping(): Promise<void> {
    await this.guard(() => this.pool.query('SELECT 1'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => undefined);
    await this.announcer.idle();
    await Promise.all([this.pool.end(), this.events.close(), this.announcePool.end()]);
  }

  private async guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      throw storageError(err, this.url);
    }
  }
}

/** The shared ledger: the one Ledger over a PostgreSQL store. */
export async function openPostgresLedger(opts: PostgresStoreOptions & LedgerOptions): Promise<Ledger> {
  return new Ledger(await PostgresStore.open(opts), opts);
}
