// Numbered migrations for the PostgreSQL ledger, the same shape as the SQLite one (see ../rules.ts for
// the columns every backend stores). Each runs once, in its own transaction, under an advisory lock,
// so replicas that start together apply each exactly once. Never edit one that has shipped.
import { LIVE_PHASES, sqlPhaseList } from '../phases.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const postgresMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, their data, content-addressed assets, charges, stream events',
    sql: `
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
      CREATE INDEX runs_live ON runs (created_at, id) WHERE phase IN (${sqlPhaseList(LIVE_PHASES)});
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
];
