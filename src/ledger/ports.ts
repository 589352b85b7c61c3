// The ledger's ports, one per role. A caller (the MCP tools, the CLI) creates and reads runs; a worker
// (the engine, runledger proxy's fence: the two executors) leases runs and moves them on; housekeeping
// forgets what retention no longer keeps and frees runs whose holder died; the HTTP transport keeps
// its stream events. One Ledger implements them all (ledger.ts, over worker-verbs.ts and ledger-core.ts);
// each user depends on its role only.
import type { Phase } from './phases.js';
import type {
  AssetRef,
  CancelOutcome,
  ChargeSource,
  ClaimedRun,
  CreateOutcome,
  CreatePreview,
  CreateRequest,
  Executor,
  JobAttach,
  JobHandle,
  ListQuery,
  NewAsset,
  RecoveryPoints,
  Run,
  RunChange,
  RunError,
  RunPage,
  StoredAsset,
  StoredDelivery,
  StoredEvent,
  StoredJob,
  SweepReport,
  Usage,
  WebhookDelivery,
  WebhookOutcome,
} from './types.js';

export interface ChangeSource {
  /**
   * Calls `listener` after every committed change to a run that this ledger learns of: its own
   * writes, and (for a shared server database) other processes' too. Returns the unsubscribe.
   */
  subscribe(listener: (change: RunChange) => void): () => void;
  /** Whether `subscribe` also hears other processes' changes (a shared server database does). */
  readonly hearsOtherProcesses: boolean;
}

export interface CallerPort extends ChangeSource {
  /** The fence: one insert under the (tenant, executor, tool, key) unique constraint decides create or replay. */
  createOrReplay(req: CreateRequest): Promise<CreateOutcome>;
  /** Dry run of createOrReplay: validation and the fence only, nothing written. */
  preview(req: CreateRequest): Promise<CreatePreview>;
  getRun(tenant: string, runId: string): Promise<Run>;
  /** A run of the engine's, by its key. */
  findRun(tenant: string, tool: string, idempotencyKey: string): Promise<Run>;
  listRuns(tenant: string, query?: ListQuery): Promise<RunPage>;
  cancel(tenant: string, runId: string): Promise<{ run: Run; outcome: CancelOutcome }>;
  /** Remove the run's assets, keep a tombstone so a late retry gets not_found. */
  deleteRun(tenant: string, runId: string): Promise<void>;
  listAssets(tenant: string, runId: string): Promise<AssetRef[]>;
  readAsset(tenant: string, runId: string, n: number): Promise<StoredAsset>;
  usage(tenant: string): Promise<Usage>;
}

export interface ClaimFilter {
  /** Default: the engine. */
  executor?: Executor;
  /** Only runs of these tools (a worker takes only what it can do). */
  tools?: readonly string[];
}

export interface WorkerPort {
  /** How long a claim holds a run; workers renew at a fraction of it. Configured once, here. */
  readonly leaseMs: number;
  /**
   * Lease the oldest run of `only.executor` that is queued, or live with its lease run out, or past
   * the back-off after a failure of its own; null when there is none. (A dead holder's runs are
   * freed for it by releaseDeadHolders.)
   */
  claim<R extends RecoveryPoints = RecoveryPoints>(owner: string, only?: ClaimFilter): Promise<ClaimedRun<R> | null>;
  /** Lease this run if it is live and free, its lease has run out or its holder is gone (see holders.ts); else null. */
  claimRun(runId: string, owner: string): Promise<Run | null>;
  /**
   * Create-or-replay a run that `owner` starts itself (runledger proxy forwarding a call): a new run
   * is created already leased to it, in the same commit. A replay is unaffected.
   */
  start(req: CreateRequest, owner: string): Promise<CreateOutcome>;
  /** Extend the lease; false when the owner no longer holds the run (canceled, taken over). */
  renew(runId: string, owner: string): Promise<boolean>;
  /** Give up a lease without changing the run, so another worker may take it at once. */
  release(runId: string, owner: string): Promise<void>;
  /** Move forward to `to`, storing `output` as the recovery point of the phase being left. Null: lease lost. */
  advance(runId: string, owner: string, to: Phase, output?: object): Promise<Run | null>;
  /**
   * Store a named recovery point without changing phase, so a worker that takes the run over knows;
   * with `progress`, the run's progress rises to it too (and is announced). False: lease lost.
   */
  checkpoint(runId: string, owner: string, name: string, value: object, progress?: number): Promise<boolean>;
  /** Store an asset content-addressed and attach it to the run as asset `n`. False: lease lost. */
  attachAsset(runId: string, owner: string, n: number, asset: NewAsset, progress: number): Promise<boolean>;
  /** The assets of a run this worker holds, and their bytes. */
  listAssets(tenant: string, runId: string): Promise<AssetRef[]>;
  readAsset(tenant: string, runId: string, n: number): Promise<StoredAsset>;
  /**
   * Mark done with its result and write the run's one charge, in one transaction. `durable: false`
   * commits without waiting for the disk: it survives the process being killed, not the machine
   * losing power (runledger proxy storing an answer, where a lost answer reads as an unknown outcome).
   */
  finish(runId: string, owner: string, result: object, charge?: ChargeSource, durable?: boolean): Promise<Run | null>;
  fail(runId: string, owner: string, error: RunError): Promise<Run | null>;
  /**
   * This attempt failed for the run's own reason (its renderer died or ran too long on it): the run
   * is tried again after a back-off that grows with such failures in a row, and failed, naming its
   * attempts, at the bound (MAX_STALLS). Null: lease lost.
   */
  abandon(runId: string, owner: string, failure: RunError): Promise<Run | null>;
  /**
   * Remove a run whose lease `owner` holds, as if it had never been created, so its key may be used
   * again (a proxied call whose upstream failed before doing anything). False: lease lost.
   */
  forget(runId: string, owner: string): Promise<boolean>;

  // A run carried out by a job provider (a queue API): its job, the webhooks that named it, its cancel.
  /**
   * Store the run's job the moment the provider names it: whenever the run exists, held by `owner`
   * or not (a holder that lost the run mid-submit still leaves what it learned for the next one).
   */
  attachJob(runId: string, owner: string, job: JobHandle): Promise<JobAttach>;
  jobOf(runId: string): Promise<StoredJob | null>;
  /** The webhooks stored for a run, the latest first. */
  webhookDeliveries(runId: string): Promise<StoredDelivery[]>;
  /** The canceled run's job, when this caller is the one (on any replica) to send the provider its cancel; else null. */
  claimJobCancel(runId: string): Promise<StoredJob | null>;
  /** Canceled runs' jobs whose cancel nobody has claimed yet (a cancel nobody here heard of). */
  jobsAwaitingCancel(): Promise<StoredJob[]>;
}

/** Where the HTTP server's webhook route hands a verified webhook: stored (deduped) for the run it names. */
export interface WebhookPort {
  recordWebhook(delivery: WebhookDelivery): Promise<WebhookOutcome>;
}

export interface Housekeeping {
  /** Forget terminal runs, tombstones and keys older than the retention window, and old stream events. */
  sweep(): Promise<SweepReport>;
  /**
   * End the leases of holders known to be gone (a process of this host that has exited; see
   * holders.ts), of `runId` only when given, without counting it against their runs, so that any
   * worker may take them at once instead of at lease expiry. Returns the runs freed.
   */
  releaseDeadHolders(runId?: string): Promise<string[]>;
}

/**
 * Resumable HTTP streams: the transport's event store lives in the ledger, so a client can resume
 * with Last-Event-ID after the server restarts. Events are scoped (to a tenant's session, say):
 * nothing is ever found through another scope.
 */
export interface StreamEventStore {
  appendEvent(scope: string, streamId: string, message: string): Promise<string>;
  /** The stream an event belongs to, or null when the event is unknown or another scope's. */
  eventStreamOf(scope: string, eventId: string): Promise<string | null>;
  /** The scope's events on `streamId` after `afterEventId` (null: from the start), oldest first. */
  eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]>;
}

/** The whole ledger, as the process that opens it holds it. */
export interface RunLedger extends CallerPort, WorkerPort, Housekeeping, StreamEventStore, WebhookPort {
  /** Where the ledger lives, safe to print: a path, or a database URL without its password. */
  describe(): string;
  /** A trivial read, for health checks. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
