// The RunLedger port: the domain verbs every backend implements. No SQL outside a backend.
import type { ErrorCode, ErrorDetails } from '../errors.js';
import type { Phase } from './phases.js';

export type JsonObject = { [key: string]: unknown };

export interface PhaseEntry {
  phase: Phase;
  at: string;
}

export interface RunError {
  code: ErrorCode;
  message: string;
  details: ErrorDetails;
}

export interface AssetRef {
  n: number;
  sha256: string;
  mime: string;
  size: number;
  meta: JsonObject;
}

export interface Run {
  id: string;
  tenant: string;
  tool: string;
  idempotencyKey: string;
  fingerprint: string;
  /** The normalised create arguments the fingerprint was taken over. */
  args: JsonObject;
  cost: number;
  phase: Phase;
  /** Every transition with its timestamp: the phase stream. */
  phases: PhaseEntry[];
  progress: number;
  result: JsonObject | null;
  error: RunError | null;
  /** Claims by a worker, this one included. */
  attempts: number;
  /**
   * Consecutive attempts whose worker stopped (died, or gave the run up) without making progress:
   * a phase, an image or a checkpoint. Progress resets it; a graceful release never adds to it.
   */
  stalls: number;
  /**
   * A live run's lease: until when its worker holds it, and when another worker may take the run
   * over should that one be gone (later when its attempt made no progress). Null when no worker
   * holds the run (queued, released) or it has ended.
   */
  lease: { expiresAt: string; takeoverAt: string } | null;
  createdAt: string;
}

/** What a charge was spent on, so usage can say credits per provider. */
export interface ChargeSource {
  provider: string;
  model: string | null;
}

/** A run handed to a worker: the run plus what earlier phases stored, to resume from. */
export interface ClaimedRun extends Run {
  /** Output of each finished phase, keyed by that phase's name, and any named checkpoints. */
  recovery: Record<string, JsonObject>;
  /** Assets already attached (a run taken over mid-render keeps them). */
  assets: AssetRef[];
}

export interface CreateRequest {
  tenant: string;
  tool: string;
  idempotencyKey: string;
  /** Tool arguments after schema defaults; `idempotency_key`, `wait_seconds`, `dry_run` are ignored. */
  args: JsonObject;
  /** `fingerprint(args)`, when the caller has it already (a retry's is cached); computed when absent. */
  fingerprint?: string;
  cost: number;
  /**
   * A worker that starts the run itself as it creates it (runledger proxy forwarding a call): a new
   * run is created already leased to this owner, in the same commit. A replay is unaffected.
   */
  startedBy?: string;
}

export interface Conflict {
  kind: 'conflict';
  runId: string;
  createdAt: string;
  differingFields: string[];
}

export type CreateOutcome = { kind: 'created'; run: Run } | { kind: 'replayed'; run: Run } | Conflict;

/** What a create would do, found without writing anything. */
export type CreatePreview = { kind: 'create'; fingerprint: string } | { kind: 'replay'; run: Run } | Conflict;

export type CancelOutcome = 'canceled' | 'already_canceled' | 'already_finished';

export interface ListQuery {
  tool?: string;
  phase?: Phase;
  limit?: number;
  cursor?: string;
}

export interface RunPage {
  runs: Run[];
  nextCursor: string | null;
}

export interface Usage {
  tenant: string;
  runs: number;
  charges: number;
  credits: number;
  /** Replayed creates answered without new work: billable runs saved. */
  replaysAbsorbed: number;
  byTool: Record<string, { runs: number; charges: number; credits: number; replaysAbsorbed: number }>;
  byProvider: Record<string, { charges: number; credits: number }>;
}

export interface SweepReport {
  runsForgotten: number;
  assetsRemoved: number;
}

export interface NewAsset {
  bytes: Uint8Array;
  mime: string;
  meta: JsonObject;
}

export interface StoredAsset {
  sha256: string;
  mime: string;
  bytes: Buffer;
}

export interface StoredEvent {
  id: string;
  streamId: string;
  /** The JSON-RPC message as JSON text. */
  message: string;
}

/** A run changed: created (queued), moved to a phase, made progress, or was deleted. */
export interface RunChange {
  runId: string;
  phase: Phase;
}

export interface RunLedger {
  /** How long a claim holds a run; workers renew at a fraction of it. Configured once, here. */
  readonly leaseMs: number;
  /** Where the ledger lives, safe to print: a path, or a database URL without its password. */
  describe(): string;
  /**
   * Calls `listener` after every committed change to a run that this ledger learns of: its own
   * writes, and (for a shared server database) other processes' too. Returns the unsubscribe.
   */
  subscribe(listener: (change: RunChange) => void): () => void;

  /** The fence: one insert under the (tenant, tool, key) unique constraint decides create or replay. */
  createOrReplay(req: CreateRequest): Promise<CreateOutcome>;
  /** Dry run of createOrReplay: validation and the fence only, nothing written. */
  preview(req: CreateRequest): Promise<CreatePreview>;
  getRun(tenant: string, runId: string): Promise<Run>;
  findRun(tenant: string, tool: string, idempotencyKey: string): Promise<Run>;
  listRuns(tenant: string, query?: ListQuery): Promise<RunPage>;

  /**
   * Lease the oldest queued run, or a live run whose lease expired, of `tools` when given (a worker
   * takes only runs it can do); null when there is none. A run whose last attempt stalled is taken
   * over only after a back-off that grows with its stalls.
   */
  claim(owner: string, tools?: readonly string[]): Promise<ClaimedRun | null>;
  /**
   * Lease this run if it is live and its lease is free or past its takeover time (its holder died);
   * null when another worker holds it, or it has ended or gone. Its attempts count the claim.
   */
  claimRun(runId: string, owner: string): Promise<Run | null>;
  /**
   * Remove a run whose lease `owner` holds, as if it had never been created, so its key may be used
   * again (a proxied call whose upstream failed before doing anything). False: lease lost.
   */
  forget(runId: string, owner: string): Promise<boolean>;
  /** Extend the lease; false when the owner no longer holds the run (canceled, taken over). */
  renew(runId: string, owner: string): Promise<boolean>;
  /** Give up a lease without changing the run, so another worker may take it at once. */
  release(runId: string, owner: string): Promise<void>;
  /** Move forward to `to`, storing `output` as the recovery point of the phase being left. Null: lease lost. */
  advance(runId: string, owner: string, to: Phase, output?: JsonObject): Promise<Run | null>;
  /**
   * Store a recovery point named `name` (an upstream call requested, say) without changing phase,
   * so a worker that takes the run over knows what happened. False: lease lost.
   */
  checkpoint(runId: string, owner: string, name: string, value: JsonObject): Promise<boolean>;
  /** Store an asset content-addressed and attach it to the run as asset `n`. False: lease lost. */
  attachAsset(runId: string, owner: string, n: number, asset: NewAsset, progress: number): Promise<boolean>;
  /**
   * Mark done with its result and write the run's one charge (with what it was spent on), in one
   * transaction. `durable: false` commits without waiting for the disk: the commit survives the
   * process being killed, not the machine losing power (runledger proxy storing an answer, where a
   * lost answer reads as an unknown outcome, never as a call to repeat).
   */
  finish(runId: string, owner: string, result: JsonObject, charge?: ChargeSource, durable?: boolean): Promise<Run | null>;
  fail(runId: string, owner: string, error: RunError): Promise<Run | null>;
  /**
   * Give the run up after a failure that may not be its own (the renderer's thread died, say): the
   * lease ends now, and the attempt counts as a stall unless it made progress.
   */
  abandon(runId: string, owner: string): Promise<void>;

  cancel(tenant: string, runId: string): Promise<{ run: Run; outcome: CancelOutcome }>;
  /** Remove the run's assets, keep a tombstone so a late retry gets not_found. */
  deleteRun(tenant: string, runId: string): Promise<void>;
  listAssets(tenant: string, runId: string): Promise<AssetRef[]>;
  readAsset(tenant: string, runId: string, n: number): Promise<StoredAsset>;
  usage(tenant: string): Promise<Usage>;
  /** Forget terminal runs, tombstones and keys older than the retention window, and old stream events. */
  sweep(): Promise<SweepReport>;

  // Resumable HTTP streams: the transport's event store lives in the ledger, so a client can resume
  // with Last-Event-ID after the server restarts. Events are scoped (to a tenant's session, say):
  // nothing is ever found through another scope.
  appendEvent(scope: string, streamId: string, message: string): Promise<string>;
  /** The stream an event belongs to, or null when the event is unknown or another scope's. */
  eventStreamOf(scope: string, eventId: string): Promise<string | null>;
  /** The scope's events on `streamId` after `afterEventId` (null: from the start), oldest first. */
  eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]>;
  /** A trivial read, for health checks. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
