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

/** A run changed: created (queued), moved to a phase, made progress, was freed, or was deleted. */
export interface RunChange {
  runId: string;
  phase: Phase;
}
