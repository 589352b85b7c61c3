// The ledger's schema, one numbered list for every database, each dialect's SQL side by side (a
// version a dialect never needed is empty there), and the one runner that applies what a ledger lacks.
// Each migration runs once, in a transaction of its own, and is recorded in schema_migrations; never
// edit one that has shipped, add the next number.
import { StorageUnavailableError } from '../errors.js';
import { LIVE_PHASES, sqlPhaseList, TERMINAL_PHASES } from './phases.js';
import type { Awaitable } from './store.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Migration {
  version: number;
  name: string;
  sqlite: string;
  postgres: string;
}

const LIVE = sqlPhaseList(LIVE_PHASES);
const TERMINAL = sqlPhaseList(TERMINAL_PHASES);

/** Milliseconds since the epoch of the `phase` entry in a schema-2 `phases` JSON list, or NULL. */
const phaseTime = (phases: string) =>
  `(SELECT CAST(round(unixepoch(e.value ->> 'at', 'subsec') * 1000) AS INTEGER) FROM json_each(${phases}) e
     WHERE e.value ->> 'phase' IN`;

/**
 * Before schema 4, the engine took over unfinished runs of its own tools' names, and runledger proxy
 * recorded every other name, and its calls to an upstream tool named like one of these, as
 * `proxied:<name>`. These were the generation tools then.
 */
const ENGINE_TOOLS_BEFORE_4 = `'product_shot', 'social_card'`;
const PROXIED_NAME = `CASE WHEN tool LIKE 'proxied:%' THEN substr(tool, 9) ELSE tool END`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, charges, content-addressed assets',
    sqlite: `
      CREATE TABLE runs (
        id               TEXT PRIMARY KEY,
        tenant           TEXT NOT NULL,
        tool             TEXT NOT NULL,
        idem_key         TEXT NOT NULL,
        fingerprint      TEXT NOT NULL,
        args             TEXT NOT NULL,
        cost             INTEGER NOT NULL,
        phase            TEXT NOT NULL,
        phases           TEXT NOT NULL,
        progress         REAL NOT NULL DEFAULT 0,
        recovery         TEXT NOT NULL DEFAULT '{}',
        result           TEXT,
        error            TEXT,
        lease_owner      TEXT,
        lease_expires_at INTEGER,
        attempts         INTEGER NOT NULL DEFAULT 0,
        replay_count     INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        deleted_at       INTEGER,
        -- The fence: one run per (tenant, tool, key), decided by this constraint alone.
        UNIQUE (tenant, tool, idem_key)
      ) STRICT;

      CREATE INDEX runs_live ON runs (created_at, id)
        WHERE phase IN ('queued', 'composing', 'rendering');
      CREATE INDEX runs_by_tenant ON runs (tenant, created_at DESC, id DESC);

      CREATE TABLE charges (
        run_id     TEXT PRIMARY KEY,
        tenant     TEXT NOT NULL,
        tool       TEXT NOT NULL,
        credits    INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX charges_by_tenant ON charges (tenant);

      CREATE TABLE assets (
        sha256     TEXT PRIMARY KEY,
        mime       TEXT NOT NULL,
        size       INTEGER NOT NULL,
        bytes      BLOB NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE run_assets (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        n      INTEGER NOT NULL,
        sha256 TEXT NOT NULL REFERENCES assets (sha256),
        meta   TEXT NOT NULL,
        PRIMARY KEY (run_id, n)
      ) STRICT;
      CREATE INDEX run_assets_by_sha ON run_assets (sha256);
    `,
    // PostgreSQL came at what SQLite calls schema 3, with the stream events.
    postgres: `
      CREATE TABLE runs (
        id               TEXT PRIMARY KEY,
        tenant           TEXT NOT NULL,
        tool             TEXT NOT NULL,
        idem_key         TEXT NOT NULL,
        fingerprint      TEXT NOT NULL,
        cost             INTEGER NOT NULL,
        args             TEXT NOT NULL,
        phase            TEXT NOT NULL,
        progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
        composing_at     BIGINT,
        rendering_at     BIGINT,
        ended_at         BIGINT,
        error            TEXT,
        lease_owner      TEXT,
        lease_expires_at BIGINT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        stalls           INTEGER NOT NULL DEFAULT 0,
        claimed_at       BIGINT,
        progressed_at    BIGINT,
        stall_backoff_ms BIGINT NOT NULL DEFAULT 0,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL,
        deleted_at       BIGINT,
        -- The fence: one run per (tenant, tool, key), across every replica, decided by this constraint alone.
        UNIQUE (tenant, tool, idem_key)
      );
      CREATE INDEX runs_live ON runs (created_at, id) WHERE phase IN (${LIVE});
      CREATE INDEX runs_by_tenant ON runs (tenant, created_at DESC, id DESC);

      -- Replays absorbed, counted apart: rewriting the hot row every second would leave a dead row
      -- version behind each time, in the table every key lookup reads.
      CREATE TABLE run_replays (
        run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        count  INTEGER NOT NULL
      );

      CREATE TABLE run_data (
        run_id   TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        recovery TEXT,
        result   TEXT
      );

      CREATE TABLE assets (
        sha256     TEXT PRIMARY KEY,
        mime       TEXT NOT NULL,
        size       INTEGER NOT NULL,
        bytes      BYTEA NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE TABLE run_assets (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        n      INTEGER NOT NULL,
        sha256 TEXT NOT NULL REFERENCES assets (sha256),
        meta   TEXT NOT NULL,
        PRIMARY KEY (run_id, n)
      );
      CREATE INDEX run_assets_by_sha ON run_assets (sha256);

      CREATE TABLE charges (
        run_id     TEXT PRIMARY KEY,
        tenant     TEXT NOT NULL,
        tool       TEXT NOT NULL,
        credits    INTEGER NOT NULL,
        provider   TEXT,
        model      TEXT,
        created_at BIGINT NOT NULL
      );
      CREATE INDEX charges_by_tenant ON charges (tenant);

      CREATE TABLE events (
        id         BIGSERIAL PRIMARY KEY,
        session_id TEXT NOT NULL,
        stream_id  TEXT NOT NULL,
        message    TEXT NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE INDEX events_by_stream ON events (stream_id, id);
      CREATE INDEX events_by_age ON events (created_at);
    `,
  },
  {
    version: 2,
    name: 'stream events for resumable HTTP',
    sqlite: `
      CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        stream_id  TEXT NOT NULL,
        message    TEXT NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX events_by_stream ON events (stream_id, id);
      CREATE INDEX events_by_age ON events (created_at);
    `,
    postgres: '',
  },
  {
    version: 3,
    name: 'small hot run rows (recovery points and results apart; phase times as columns), stall counts, charge sources',
    // The key lookup of every replay reads the hot row; with the recovery points and the result inline
    // a run took ~8 KB, so a large ledger spread its keys over many more pages. The arguments stay:
    // a create writes them anyway, and one row fewer per create is one page fewer per commit.
    sqlite: `
      CREATE TABLE runs_v3 (
        id               TEXT PRIMARY KEY,
        tenant           TEXT NOT NULL,
        tool             TEXT NOT NULL,
        idem_key         TEXT NOT NULL,
        fingerprint      TEXT NOT NULL,
        cost             INTEGER NOT NULL,
        args             TEXT NOT NULL,
        phase            TEXT NOT NULL,
        progress         REAL NOT NULL DEFAULT 0,
        composing_at     INTEGER,
        rendering_at     INTEGER,
        ended_at         INTEGER,
        error            TEXT,
        lease_owner      TEXT,
        lease_expires_at INTEGER,
        attempts         INTEGER NOT NULL DEFAULT 0,
        stalls           INTEGER NOT NULL DEFAULT 0,
        claimed_at       INTEGER,
        progressed_at    INTEGER,
        stall_backoff_ms INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        deleted_at       INTEGER,
        -- The fence: one run per (tenant, tool, key), decided by this constraint alone.
        UNIQUE (tenant, tool, idem_key)
      ) STRICT;

      -- Written once a run has something to keep: a recovery point, then its result. Tables keyed by
      -- a run id are WITHOUT ROWID: the key is the table, not a second index beside it.
      CREATE TABLE run_data (
        run_id   TEXT PRIMARY KEY REFERENCES runs_v3 (id) ON DELETE CASCADE,
        -- Recovery points serve a run that may be resumed; NULL once it is terminal.
        recovery TEXT,
        -- The result's JSON, zlib-deflated (or plain JSON text, from schema 2).
        result   BLOB
      ) STRICT, WITHOUT ROWID;

      INSERT INTO runs_v3 (id, tenant, tool, idem_key, fingerprint, cost, args, phase, progress, composing_at, rendering_at,
          ended_at, error, lease_owner, lease_expires_at, attempts, claimed_at, progressed_at, created_at,
          updated_at, deleted_at)
        SELECT id, tenant, tool, idem_key, fingerprint, cost, args, phase, progress,
          ${phaseTime('phases')} ('composing')),
          ${phaseTime('phases')} ('rendering')),
          ${phaseTime('phases')} (${TERMINAL})),
          -- A run held before the upgrade counts its last claim as made, with progress, at its last write.
          error, lease_owner, lease_expires_at, attempts, updated_at, updated_at, created_at, updated_at, deleted_at
        FROM runs;
      -- Replays absorbed, counted apart: the count changes every second, and the hot row should not.
      CREATE TABLE run_replays (
        run_id TEXT PRIMARY KEY REFERENCES runs_v3 (id) ON DELETE CASCADE,
        count  INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      INSERT INTO run_replays SELECT id, replay_count FROM runs WHERE replay_count > 0;

      INSERT INTO run_data
        SELECT id, CASE WHEN phase IN (${TERMINAL}) THEN NULL ELSE recovery END, CAST(result AS BLOB) FROM runs
        WHERE result IS NOT NULL OR (recovery <> '{}' AND phase NOT IN (${TERMINAL}));

      DROP TABLE runs;
      ALTER TABLE runs_v3 RENAME TO runs;
      CREATE INDEX runs_live ON runs (created_at, id) WHERE phase IN (${LIVE});
      CREATE INDEX runs_by_tenant ON runs (tenant, created_at DESC, id DESC);

      CREATE TABLE run_assets_v3 (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        n      INTEGER NOT NULL,
        sha256 TEXT NOT NULL REFERENCES assets (sha256),
        meta   TEXT NOT NULL,
        PRIMARY KEY (run_id, n)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO run_assets_v3 SELECT run_id, n, sha256, meta FROM run_assets;
      DROP TABLE run_assets;
      ALTER TABLE run_assets_v3 RENAME TO run_assets;
      CREATE INDEX run_assets_by_sha ON run_assets (sha256);

      -- Charges also say what they were spent on, so usage can give credits per provider.
      CREATE TABLE charges_v3 (
        run_id     TEXT PRIMARY KEY,
        tenant     TEXT NOT NULL,
        tool       TEXT NOT NULL,
        credits    INTEGER NOT NULL,
        provider   TEXT,
        model      TEXT,
        created_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      INSERT INTO charges_v3 (run_id, tenant, tool, credits, created_at) SELECT run_id, tenant, tool, credits, created_at FROM charges;
      DROP TABLE charges;
      ALTER TABLE charges_v3 RENAME TO charges;
      CREATE INDEX charges_by_tenant ON charges (tenant);
    `,
    postgres: '',
  },
  {
    version: 4,
    name: 'runs record their executor, which the fence covers; a crash no longer counts against a run',
    // Stall counts and the back-off columns counted attempts whose worker died: they start again at 0,
    // and a run waiting to be taken over keeps only its lease expiry.
    sqlite: `
      CREATE TABLE runs_v4 (
        id               TEXT PRIMARY KEY,
        tenant           TEXT NOT NULL,
        executor         TEXT NOT NULL CHECK (executor IN ('engine', 'proxy')),
        tool             TEXT NOT NULL,
        idem_key         TEXT NOT NULL,
        fingerprint      TEXT NOT NULL,
        cost             INTEGER NOT NULL,
        args             TEXT NOT NULL,
        phase            TEXT NOT NULL,
        progress         REAL NOT NULL DEFAULT 0,
        composing_at     INTEGER,
        rendering_at     INTEGER,
        ended_at         INTEGER,
        error            TEXT,
        lease_owner      TEXT,
        lease_expires_at INTEGER,
        attempts         INTEGER NOT NULL DEFAULT 0,
        stalls           INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        deleted_at       INTEGER,
        -- The fence: one run per (tenant, executor, tool, key), decided by this constraint alone.
        UNIQUE (tenant, executor, tool, idem_key)
      ) STRICT;
      INSERT INTO runs_v4 (id, tenant, executor, tool, idem_key, fingerprint, cost, args, phase, progress, composing_at,
          rendering_at, ended_at, error, lease_owner, lease_expires_at, attempts, created_at, updated_at, deleted_at)
        SELECT id, tenant, CASE WHEN tool IN (${ENGINE_TOOLS_BEFORE_4}) THEN 'engine' ELSE 'proxy' END, ${PROXIED_NAME},
          idem_key, fingerprint, cost, args, phase, progress, composing_at, rendering_at, ended_at, error, lease_owner,
          lease_expires_at, attempts, created_at, updated_at, deleted_at
        FROM runs;
      DROP TABLE runs;
      ALTER TABLE runs_v4 RENAME TO runs;
      CREATE INDEX runs_live ON runs (created_at, id) WHERE phase IN (${LIVE});
      CREATE INDEX runs_by_tenant ON runs (tenant, created_at DESC, id DESC);
      UPDATE charges SET tool = substr(tool, 9) WHERE tool LIKE 'proxied:%';
    `,
    postgres: `
      ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_tenant_tool_idem_key_key;
      ALTER TABLE runs ADD COLUMN executor TEXT NOT NULL DEFAULT 'engine' CHECK (executor IN ('engine', 'proxy'));
      UPDATE runs SET executor = 'proxy', tool = ${PROXIED_NAME} WHERE tool NOT IN (${ENGINE_TOOLS_BEFORE_4});
      UPDATE charges SET tool = substr(tool, 9) WHERE tool LIKE 'proxied:%';
      ALTER TABLE runs ALTER COLUMN executor DROP DEFAULT;
      -- The fence: one run per (tenant, executor, tool, key), across every replica, decided by this constraint alone.
      ALTER TABLE runs ADD CONSTRAINT runs_fence UNIQUE (tenant, executor, tool, idem_key);
      UPDATE runs SET stalls = 0 WHERE stalls <> 0;
      ALTER TABLE runs DROP COLUMN claimed_at, DROP COLUMN progressed_at, DROP COLUMN stall_backoff_ms;
    `,
  },
  {
    version: 5,
    name: "jobs at job providers (a run's job handle) and their webhooks, deduped by the provider's webhook id",
    // A job is its run's: one a run, and one run a job, so an orphan found by two runs is adopted by one.
    // Webhooks are kept only for live runs that exist, and go with their run.
    sqlite: `
      CREATE TABLE run_jobs (
        run_id              TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        provider            TEXT NOT NULL,
        job_id              TEXT NOT NULL,
        -- What the submit's answer said that later calls need (status, cancel, result URLs), as JSON.
        fields              TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        -- Set once, by whoever sends the provider's cancel for a canceled run.
        cancel_requested_at INTEGER,
        UNIQUE (provider, job_id)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE webhook_deliveries (
        provider    TEXT NOT NULL,
        webhook_id  TEXT NOT NULL,
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        job_id      TEXT,
        status      TEXT,
        received_at INTEGER NOT NULL,
        -- The dedupe: a provider retries a webhook with the same id.
        PRIMARY KEY (provider, webhook_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries (run_id, received_at);
    `,
    postgres: `
      CREATE TABLE run_jobs (
        run_id              TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        provider            TEXT NOT NULL,
        job_id              TEXT NOT NULL,
        -- What the submit's answer said that later calls need (status, cancel, result URLs), as JSON.
        fields              TEXT NOT NULL,
        created_at          BIGINT NOT NULL,
        -- Set once, by whoever sends the provider's cancel for a canceled run, on whichever replica.
        cancel_requested_at BIGINT,
        UNIQUE (provider, job_id)
      );

      CREATE TABLE webhook_deliveries (
        provider    TEXT NOT NULL,
        webhook_id  TEXT NOT NULL,
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        job_id      TEXT,
        status      TEXT,
        received_at BIGINT NOT NULL,
        -- The dedupe, across every replica: a provider retries a webhook with the same id.
        PRIMARY KEY (provider, webhook_id)
      );
      CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries (run_id, received_at);
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** What the runner needs of a database, inside one migration's transaction. */
export interface MigrationSession {
  exec(sql: string): Awaitable<void>;
  versions(): Awaitable<number[]>;
  record(version: number, name: string): Awaitable<void>;
}

/**
 * Applies each migration the ledger lacks. `step` runs one in a transaction of its own, holding
 * whatever lock keeps processes that open a new ledger at once from applying it twice; the versions
 * are read again inside it.
 */
export async function migrate(
  dialect: Dialect,
  where: string,
  step: (body: (session: MigrationSession) => Promise<void>) => Promise<void>,
): Promise<void> {
  for (const m of MIGRATIONS) {
    await step(async (session) => {
      const applied = await session.versions();
      const newest = Math.max(0, ...applied);
      if (newest > SCHEMA_VERSION) {
        throw new StorageUnavailableError(
          `The ledger ${where} was written by a newer runledger (schema ${newest}, this one knows ${SCHEMA_VERSION}).`,
          {
            ledger: where,
            schema: newest,
            supported: SCHEMA_VERSION,
          },
        );
      }
      if (applied.includes(m.version)) return;
      if (m[dialect] !== '') await session.exec(m[dialect]);
      await session.record(m.version, m.name);
    });
  }
}
