// The ledger's domain types: what a run is, what its callers and workers hand it, what it answers.
import type { ErrorCode, ErrorDetails } from '../errors.js';
import type { Phase } from './phases.js';

export type JsonObject = { [key: string]: unknown };

/**
 * Who carries a run out: the engine renders it; runledger proxy forwards it to an upstream server.
 * Each claims only its own runs, and one key names a run of each apart.
 */
export type Executor = 'engine' | 'proxy';

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
  executor: Executor;
  fingerprint: string;
  /** The create arguments the fingerprint was taken over. */
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
   * Attempts in a row that failed for the run's own reasons (its renderer died or ran too long on
   * it); progress resets the count, and a worker's crash never adds to it.
   */
  stalls: number;
  /** The worker holding a live run, and until when; null when no worker holds it. */
  lease: { holder: string; expiresAt: string } | null;
  /** A live run whose last attempt failed on its own account is tried again no sooner than this. */
  retryAt: string | null;
  createdAt: string;
}

/** What a charge was spent on, so usage can say credits per provider. */
export interface ChargeSource {
  provider: string;
  model: string | null;
}

/**
 * What a worker stored to resume from: the output of each finished phase, keyed by that phase's name,
 * and named checkpoints. Plain JSON; the executor that wrote the points types them.
 */
export type RecoveryPoints = { readonly [name: string]: unknown };

/** A run handed to a worker: the run plus what earlier attempts stored, to resume from. */
export interface ClaimedRun<R extends RecoveryPoints = RecoveryPoints> extends Run {
  recovery: Partial<R>;
  /** Assets already attached (a run taken over mid-render keeps them). */
  assets: AssetRef[];
}

export interface CreateRequest {
  tenant: string;
  tool: string;
  idempotencyKey: string;
  /** Tool arguments after schema defaults, without the per-call fields (mcp/ strips them). */
  args: JsonObject;
  /** `fingerprint(args)`, when the caller has it already (a retry's is cached); computed when absent. */
  fingerprint?: string | undefined;
  cost: number;
  /** Default: the engine. */
  executor?: Executor | undefined;
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
  tool?: string | undefined;
  phase?: Phase | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
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

/**
 * A run's job at a job provider (a queue API): the job's id there, and what the submit's answer said
 * that later calls need (its status, cancel or result URLs). Stored the moment the submit answers.
 */
export interface JobHandle {
  /** The provider's name in configuration (its definition's name). */
  provider: string;
  jobId: string;
  /** Values taken from the submit's answer, by name (see the definition's submit.response.capture). */
  fields: Record<string, string>;
}

export interface StoredJob extends JobHandle {
  runId: string;
  createdAt: string;
  /** When the provider's cancel was claimed for this job (the run was canceled); null while nobody has. */
  cancelRequestedAt: string | null;
}

/** A verified webhook, as the HTTP server hands it to the ledger. */
export interface WebhookDelivery {
  provider: string;
  /** The provider's id of this delivery: a retry of it carries the same one. */
  webhookId: string;
  /** The run the webhook named (a parameter of the URL it was sent to), when it named one. */
  runId: string | null;
  jobId: string | null;
  /** The job's status as the webhook gave it: for the log; the holder asks the provider itself. */
  status: string | null;
}

export interface StoredDelivery extends WebhookDelivery {
  runId: string;
  receivedAt: string;
}

/**
 * What became of a webhook: stored for its run (whose holder hears of it through the change feed), a
 * repeat of one already stored, or ignored: no live run of this ledger is its run.
 */
export type WebhookOutcome =
  | { kind: 'stored'; runId: string }
  | { kind: 'duplicate'; runId: string }
  | { kind: 'ignored'; reason: 'unknown_run' | 'finished_run' | 'other_job' };

/** What attaching a job to a run left: the run's job (this one, or one it had already; null when the job is another run's), and whether `owner` still holds the run. */
export interface JobAttach {
  job: StoredJob | null;
  held: boolean;
}

/** A run changed: created (queued), moved to a phase, made progress, was freed, or was deleted. */
export interface RunChange {
  runId: string;
  phase: Phase;
}
