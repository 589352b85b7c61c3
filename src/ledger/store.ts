// The LedgerStore port: the storage primitives the one Ledger is written over, and how a database runs
// them (sqlite/store.ts, postgres/store.ts; the primitives themselves are SQL written once, sql.ts). A
// store makes no decision: what to read, what it means and what to write is the Ledger's (ledger.ts,
// worker-verbs.ts, ledger-core.ts) and the rules' (rules.ts).
import type { Phase } from './phases.js';
import type { AssetRef, Executor, JsonObject, RecoveryPoints, RunError, StoredAsset, StoredEvent } from './types.js';

/** A value now (SQLite, whose calls are synchronous) or later (PostgreSQL): one code path awaits both. */
export type Awaitable<T> = T | Promise<T>;

/** What the fence's unique constraint covers. */
export interface RunKey {
  tenant: string;
  executor: Executor;
  tool: string;
  idempotencyKey: string;
}

/** A run as the store keeps it, but for its arguments, result, recovery points and assets (kept apart). Times in ms. */
export interface RunRecord extends RunKey {
  id: string;
  fingerprint: string;
  cost: number;
  phase: Phase;
  progress: number;
  /** When the run entered each later phase; the queued entry is createdAt. */
  composingAt: number | null;
  renderingAt: number | null;
  /** When it reached its terminal phase. */
  endedAt: number | null;
  error: RunError | null;
  attempts: number;
  stalls: number;
  leaseOwner: string | null;
  /** With a holder, until when it holds the run; without, when a run backing off may be tried again. */
  leaseExpiresAt: number | null;
  createdAt: number;
  updatedAt: number;
  deletedAt: number | null;
}

export type StoredRun = RunRecord & { args: JsonObject };

export interface ChargeRow {
  runId: string;
  tenant: string;
  tool: string;
  credits: number;
  /** What it was spent on; null when the worker did not say. */
  provider: string | null;
  model: string | null;
  at: number;
}

export interface AssetRow {
  sha256: string;
  mime: string;
  bytes: Uint8Array;
  meta: JsonObject;
}

/** A run's job as stored (run_jobs). Times in ms. */
export interface JobRow {
  runId: string;
  provider: string;
  jobId: string;
  fields: Record<string, string>;
  createdAt: number;
  cancelRequestedAt: number | null;
}

/** A webhook as stored (webhook_deliveries), for the run it named. */
export interface DeliveryRow {
  provider: string;
  webhookId: string;
  runId: string;
  jobId: string | null;
  status: string | null;
  receivedAt: number;
}

/** A list query once checked (rules.ts): at most `limit`, strictly older than `before` (createdAt, id). */
export interface CheckedListQuery {
  limit: number;
  tool?: string;
  phase?: Phase;
  before?: { createdAt: number; id: string };
}

export interface UsageRows {
  runs: { tool: string; runs: number; replays: number }[];
  charges: { tool: string; provider: string; charges: number; credits: number }[];
}

/** The primitives. Through `read`, each is a statement of its own; through `write`, part of its transaction. */
export interface StoreOps {
  runByKey(key: RunKey): Awaitable<RunRecord | undefined>;
  /** `lock`: held for the rest of the write transaction (PostgreSQL's FOR UPDATE). */
  runById(id: string, lock?: boolean): Awaitable<StoredRun | undefined>;
  /** The fenced insert: false when the key is taken (nothing written). */
  insertRun(run: RunRecord, args: JsonObject): Awaitable<boolean>;
  /** Writes what changes over a run's life: phase, progress, times, error, counts, lease, tombstone. */
  writeRun(run: RunRecord): Awaitable<void>;
  argsOf(id: string): Awaitable<JsonObject>;
  resultOf(id: string): Awaitable<JsonObject | null>;
  recoveryOf(id: string): Awaitable<RecoveryPoints>;
  /** Null drops them (the run is terminal). */
  putRecovery(id: string, points: RecoveryPoints | null): Awaitable<void>;
  /** Stores a done run's result (as JSON text) and drops its recovery points. */
  putResult(id: string, resultJson: string): Awaitable<void>;
  /** The run's one charge (a second is ignored). */
  charge(charge: ChargeRow): Awaitable<void>;
  attachAsset(runId: string, n: number, asset: AssetRow, at: number): Awaitable<void>;
  assetsOf(runId: string): Awaitable<AssetRef[]>;
  assetBytes(runId: string, n: number): Awaitable<StoredAsset | undefined>;
  /** Keeps only a deleted run's hot row (its tombstone): arguments, data and asset links go. Returns the unlinked hashes. */
  clearRun(id: string): Awaitable<string[]>;
  /** Deletes runs with everything of theirs. Returns the unlinked hashes. */
  deleteRuns(ids: readonly string[]): Awaitable<string[]>;
  /** Deletes the bytes of these hashes that no run links to any more; how many. */
  dropOrphanAssets(sha256s: readonly string[]): Awaitable<number>;
  /** The oldest run of `executor` (and `tools`) that is live and free or past its lease, locked (skipping locked ones). */
  nextClaimable(
    now: number,
    executor: Executor,
    tools: readonly string[] | undefined,
  ): Awaitable<StoredRun | undefined>;
  /** Up to `limit + 1` of a tenant's runs, newest first. */
  page(tenant: string, query: CheckedListQuery): Awaitable<StoredRun[]>;
  usageRows(tenant: string): Awaitable<UsageRows>;
  /** Terminal or deleted runs created at or before `cutoff`, locked (skipping locked ones). */
  expiredIds(cutoff: number, limit: number): Awaitable<string[]>;
  /** Live runs whose holder's lease has not run out: whose holder may be checked for life. */
  heldRuns(now: number): Awaitable<{ id: string; owner: string }[]>;
  addReplays(counts: readonly (readonly [runId: string, count: number])[]): Awaitable<void>;
  /** A run's job. False, with nothing written, when the run has one already or the job is another run's. */
  insertJob(job: JobRow): Awaitable<boolean>;
  jobOf(runId: string): Awaitable<JobRow | undefined>;
  jobByProviderId(provider: string, jobId: string): Awaitable<JobRow | undefined>;
  /** Marks the job's cancel as claimed; false when it was claimed already. */
  markJobCancel(runId: string, at: number): Awaitable<boolean>;
  /** Jobs of canceled runs whose cancel nobody has claimed, oldest first. */
  jobsToCancel(limit: number): Awaitable<JobRow[]>;
  /** False, with nothing written, when a webhook with this (provider, id) was stored already. */
  insertDelivery(delivery: DeliveryRow): Awaitable<boolean>;
  /** A run's webhooks, the latest first, at most `limit`. */
  deliveriesOf(runId: string, limit: number): Awaitable<DeliveryRow[]>;
}

export interface EventStoreOps {
  appendEvent(scope: string, streamId: string, message: string, at: number): Promise<string>;
  eventStreamOf(scope: string, eventId: string): Promise<string | null>;
  eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]>;
  dropEventsBefore(cutoff: number): Promise<void>;
}

export interface LedgerStore {
  /** Where it lives, safe to print. */
  readonly location: string;
  readonly events: EventStoreOps;
  /** One primitive as a statement of its own, seeing only what is committed. */
  read<T>(body: (ops: StoreOps) => Awaitable<T>): Awaitable<T>;
  /** The fenced insert as a statement of its own: the one atomic write that decides create or replay. */
  fence(run: RunRecord, args: JsonObject): Promise<boolean>;
  /**
   * One write transaction: `body` reads, decides and writes through `tx`, and awaits nothing else.
   * `durable: false` commits without waiting for the disk.
   */
  write<T>(body: (tx: StoreOps) => Promise<T>, opts?: { durable?: boolean }): Promise<T>;
  ping(): Promise<void>;
  close(): Promise<void>;

  // Optional capabilities.
  /** Reads cost microseconds (in process): the fence reads a key before trying the insert. */
  readonly readsAreCheap?: boolean;
  /** A number that changes whenever anything may have been committed since it was last read: a replay of a row read since answers without reading. */
  changeEpoch?(): number;
  /** Tells other processes of committed changes, and this one of theirs. */
  announce?(changes: readonly { runId: string; phase: Phase }[]): void;
  onAnnounced?(listener: (change: { runId: string; phase: Phase }) => void): void;
  /** After a sweep: hand freed space back. */
  compact?(): Promise<void>;
}
