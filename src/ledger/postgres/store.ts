// The shared store for deployments with several replicas: one PostgreSQL database, whose unique
// constraint fences duplicate calls across every replica. Its capability: announcing committed changes
// to the other replicas and hearing theirs (announcer.ts says why after the commit, not inside it).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { RunledgerError, StorageUnavailableError } from '../../errors.js';
import type { LedgerOptions } from '../ledger-core.js';
import { Ledger } from '../ledger.js';
import { migrate } from '../migrations.js';
import { DEFAULT_POOL_SIZE } from '../rules.js';
import { SqlOps, type SqlDialect, type SqlDriver } from '../sql.js';
import type { Awaitable, LedgerStore, RunRecord, StoreOps } from '../store.js';
import type { JsonObject, RunChange } from '../types.js';
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

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;
/** Taken (per transaction) while migrating, so replicas that start together migrate one at a time. */
const MIGRATION_LOCK = 0x72756e6c; // "runl"

/**
 * BIGINT (and COUNT) as JS numbers: times are milliseconds, far inside the exact range. Set per pool,
 * so no other user of `pg` in the process is affected.
 */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** PostgreSQL's words where they differ. */
const POSTGRES: SqlDialect = {
  forUpdate: ' FOR UPDATE',
  // SKIP LOCKED: replicas claiming at once each take a different run instead of queueing on one.
  forUpdateSkipLocked: ' FOR UPDATE SKIP LOCKED',
  jsonList: (param) => `SELECT json_array_elements_text(${param}::json)`,
  jsonPairs: (param) => `SELECT e ->> 0 AS id, (e ->> 1)::int AS n FROM json_array_elements(${param}::json) e`,
  packResult: (json) => json,
  unpackResult: (stored) => (stored == null ? null : (JSON.parse(stored as string) as JsonObject)),
  isForeignKeyViolation: (err) => (err as { code?: unknown }).code === '23503',
};

/** Each statement, its `?` placeholders numbered, under a name: prepared once per connection. */
const prepared = new Map<string, { name: string; text: string }>();
function statement(sql: string): { name: string; text: string } {
  let known = prepared.get(sql);
  if (known === undefined) {
    let n = 0;
    prepared.set(sql, (known = { name: `runledger_${prepared.size}`, text: sql.replace(/\?/g, () => `$${++n}`) }));
  }
  return known;
}

class PostgresDriver implements SqlDriver {
  readonly dialect = POSTGRES;
  constructor(private readonly db: pg.Pool | pg.PoolClient) {}

  private query(sql: string, params: readonly unknown[]) {
    // A statement without parameters (a savepoint) goes as it is: only queries may be prepared.
    return params.length === 0
      ? this.db.query({ text: sql, rowMode: 'array' })
      : this.db.query({ ...statement(sql), values: [...params], rowMode: 'array' });
  }

  async rows(sql: string, params: readonly unknown[]): Promise<unknown[][]> {
    return (await this.query(sql, params)).rows as unknown[][];
  }

  async run(sql: string, params: readonly unknown[]): Promise<number> {
    return (await this.query(sql, params)).rowCount ?? 0;
  }
}

export class PostgresStore implements LedgerStore {
  readonly location: string;
  readonly events: PostgresEvents;
  private readonly pool: pg.Pool;
  private readonly onPool: SqlOps;
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
    this.pool = new pg.Pool({
      ...connection,
      max: poolSize,
      options: `-c search_path=${schema} -c plan_cache_mode=force_custom_plan`,
    });
    this.onPool = new SqlOps(new PostgresDriver(this.pool), false);
    // One connection: appends are inserted in the order they were made, so ids rise in that order.
    const eventsPool = new pg.Pool({
      ...connection,
      max: 1,
      options: `-c search_path=${schema} -c synchronous_commit=off`,
    });
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
      throw new StorageUnavailableError(
        `The PostgreSQL schema name "${schema}" is not usable: lower-case letters, digits and "_", at most 63.`,
        { schema },
      );
    }
    parsed.searchParams.delete('schema');
    const store = new PostgresStore(parsed.toString(), schema, opts.poolSize ?? DEFAULT_POOL_SIZE);
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
      await client.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`,
      );
      await body({
        exec: async (sql) => void (await client.query(sql)),
        versions: async () =>
          (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
        record: async (version, name) =>
          void (await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
            version,
            name,
            Date.now(),
          ])),
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
      if (!this.closed)
        setTimeout(
          () => void this.listen(attempt + 1).catch(() => undefined),
          Math.min(5000, 100 * 2 ** attempt),
        ).unref();
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
        const result = await body(new SqlOps(new PostgresDriver(client), true));
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
