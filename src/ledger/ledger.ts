// The one Ledger: every verb written once over a LedgerStore. Each verb validates, runs one store
// transaction that reads, applies the pure rules (rules.ts) and writes, then announces the change, then
// updates what this process remembers (results of finished runs, keys it has met, replays to count).
import { createHash } from 'node:crypto';
import { BoundedMap } from '../bounded-map.js';
import { InternalError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import { ChangeFeed } from './change-feed.js';
import { assertValidKey, fingerprint } from './fingerprint.js';
import { holderGone } from './holders.js';
import { isTerminal, Phase } from './phases.js';
import type { ClaimFilter, RunLedger } from './ports.js';
import { ReplayCounter } from './replay-counter.js';
import {
  afterFailedAttempt,
  assetNotFound,
  cancelDecision,
  checkCreate,
  checkListQuery,
  conflictOf,
  DEFAULT_LEASE_MS,
  DEFAULT_RETENTION_MS,
  deletedRunError,
  EVENT_RETENTION_MS,
  holdsLease,
  isClaimable,
  isExpired,
  judgeExisting,
  keyNotFound,
  keyOf,
  leasedTo,
  moved,
  newRecord,
  pageOf,
  progressed,
  released,
  sameRecord,
  toRun,
  usageOf,
  visible,
} from './rules.js';
import type { DeliveryRow, JobRow, LedgerStore, RunRecord, StoreOps, StoredRun } from './store.js';
import type {
  AssetRef,
  CancelOutcome,
  ChargeSource,
  ClaimedRun,
  Conflict,
  CreateOutcome,
  CreatePreview,
  CreateRequest,
  JobAttach,
  JobHandle,
  JsonObject,
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

export interface LedgerOptions {
  leaseMs?: number | undefined;
  retentionMs?: number | undefined;
  /** Milliseconds since the epoch; tests pass a fake clock. */
  clock?: (() => number) | undefined;
  /** How often replay counts are written back (they are batched off the replay path). */
  replayFlushMs?: number | undefined;
}

type Replayed = Extract<CreateOutcome, { kind: 'replayed' }>;

/** What a phase move stores beside the new phase: the recovery point of the phase it leaves (output), or the result. */
type MoveData = { output?: object | undefined; result?: object; charge?: ChargeSource | undefined; error?: RunError };

/**
 * The run each replayed key was last answered with, the record it was built from, and the store's
 * change epoch before that record was read: while nothing was committed since, a replay reads nothing.
 */
type KnownReplay = { epoch: number; record: RunRecord; run: Run };
type ReplayCacheEntry = { cacheKey: string; epoch: number; known: KnownReplay | undefined };

/** Sweeps delete in slices, so a large sweep never holds the write lock for long. */
const SWEEP_SLICE = 500;
/** A run's latest webhooks are what its holder reads; a provider sends a handful. */
const DELIVERIES_READ = 20;
/** Canceled runs' jobs handed out at a time to send their cancels. */
const CANCELS_READ = 50;

const iso = (ms: number): string => new Date(ms).toISOString();
const storedJob = (j: JobRow): StoredJob => ({
  runId: j.runId,
  provider: j.provider,
  jobId: j.jobId,
  fields: j.fields,
  createdAt: iso(j.createdAt),
  cancelRequestedAt: j.cancelRequestedAt === null ? null : iso(j.cancelRequestedAt),
});
const storedDelivery = (d: DeliveryRow): StoredDelivery => ({
  provider: d.provider,
  webhookId: d.webhookId,
  runId: d.runId,
  jobId: d.jobId,
  status: d.status,
  receivedAt: iso(d.receivedAt),
});

export class Ledger implements RunLedger {
  readonly leaseMs: number;
  private readonly now: () => number;
  private readonly retentionMs: number;
  private readonly changes = new ChangeFeed();
  private readonly replays: ReplayCounter;
  /** A done run's result never changes: read once, then remembered. */
  private readonly finishedResults = new BoundedMap<string, JsonObject>(4096);
  /** Keys this process has created or answered: a retry of one is read before anything is written. */
  private readonly knownKeys = new BoundedMap<string, true>(16_384);
  private readonly replayed = new BoundedMap<string, KnownReplay>(4096);
  private closed = false;

  constructor(
    private readonly store: LedgerStore,
    opts: LedgerOptions = {},
  ) {
    this.now = opts.clock ?? Date.now;
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.replays = new ReplayCounter(
      (counts) => this.store.write(async (tx) => tx.addReplays(counts)),
      opts.replayFlushMs ?? 1000,
    );
    store.onAnnounced?.((change) => this.changes.emit(change));
  }

  describe(): string {
    return this.store.location;
  }

  subscribe(listener: (change: RunChange) => void): () => void {
    return this.changes.subscribe(listener);
  }

  get hearsOtherProcesses(): boolean {
    return this.store.onAnnounced !== undefined;
  }

  /** After a commit: this process's listeners now, other processes through the store. */
  private publish(changes: RunChange[]): void {
    for (const change of changes) this.changes.emit(change);
    this.store.announce?.(changes);
  }

  // ---- the fence -------------------------------------------------------------------------------

  createOrReplay(req: CreateRequest): Promise<CreateOutcome> {
    return this.fence(req, null);
  }

  start(req: CreateRequest, owner: string): Promise<CreateOutcome> {
    return this.fence(req, owner);
  }

  private async fence(req: CreateRequest, startedBy: string | null): Promise<CreateOutcome> {
    const key = keyOf(req);
    const cacheKey = `${key.tenant}\u0000${key.executor}\u0000${key.tool}\u0000${key.idempotencyKey}`;
    // A repeat of a key whose row nothing has changed since it was read needs no read at all. Only a
    // key answered before is worth the epoch, taken before the row's read so that a change committed
    // in between shows next time. It decides nothing alone: a miss still goes through the insert.
    const known = typeof req.idempotencyKey === 'string' ? this.replayed.get(cacheKey) : undefined;
    // A key answered before was checked then: the same tenant, tool and key strings need no second look.
    const fp = known === undefined ? checkCreate(req) : (req.fingerprint ?? fingerprint(req.args));
    const epoch = known === undefined ? NaN : (this.store.changeEpoch?.() ?? NaN);
    if (known !== undefined && known.epoch === epoch && known.run.fingerprint === fp && this.kept(known.record))
      return this.replayOf(known.run);
    // A key this process has met is most likely a retry, and where reads cost microseconds any key is
    // worth reading first: a read writes nothing.
    if (this.store.readsAreCheap === true || this.knownKeys.has(cacheKey)) {
      const seen = await this.store.read((s) => s.runByKey(key));
      if (this.kept(seen)) return this.answer(seen, req, fp, true, { cacheKey, epoch, known });
    }
    const run = newRecord(req, fp, this.now(), this.leaseMs, startedBy);
    const inserted = await this.store.fence(run, req.args);
    this.knownKeys.set(cacheKey, true);
    if (inserted) return this.created(run, req.args);
    const holder = await this.store.read((s) => s.runByKey(key));
    if (this.kept(holder)) return this.answer(holder, req, fp);
    // The key outlived its retention window before a sweep forgot it: forget it now, as a sweep would,
    // and create, in one transaction. Another process doing the same meets the unique constraint.
    const retry = await this.store.write(async (tx) => {
      const stale = await tx.runByKey(key);
      if (stale !== undefined && !isExpired(stale, this.now(), this.retentionMs))
        return { created: false as const, holder: stale };
      if (stale !== undefined) await tx.dropOrphanAssets(await tx.deleteRuns([stale.id]));
      const fresh = newRecord(req, fp, this.now(), this.leaseMs, startedBy);
      if (await tx.insertRun(fresh, req.args)) return { created: true as const, fresh, forgotten: stale?.id };
      const winner = await tx.runByKey(key);
      if (winner === undefined) throw new InternalError('the key is taken but no run holds it');
      return { created: false as const, holder: winner };
    });
    if (!retry.created) return this.answer(retry.holder, req, fp);
    if (retry.forgotten !== undefined) this.forgotten([retry.forgotten]);
    return this.created(retry.fresh, req.args);
  }

  /** A key's run that retention still keeps (false does not mean there is none). */
  private kept(run: RunRecord | undefined): run is RunRecord {
    return run !== undefined && !isExpired(run, this.now(), this.retentionMs);
  }

  private created(run: RunRecord, args: JsonObject): CreateOutcome {
    this.publish([{ runId: run.id, phase: run.phase }]);
    return { kind: 'created', run: toRun(run, args, null) };
  }

  private replayOf(run: Run): Replayed {
    this.replays.count(run.id);
    return { kind: 'replayed', run };
  }

  /** What a key's live holder answers a create with `fp`; remembered for the fast path when `cache` is given. */
  private async answer(
    run: RunRecord,
    req: CreateRequest,
    fp: string,
    countReplay = true,
    cache?: ReplayCacheEntry,
  ): Promise<Conflict | Replayed> {
    switch (judgeExisting(run, fp, this.now(), this.retentionMs)) {
      case 'deleted':
        throw deletedRunError(run.id);
      case 'expired':
        throw new InternalError(`run ${run.id} expired while it was being answered`);
      case 'conflict':
        return conflictOf(run, await this.store.read((s) => s.argsOf(run.id)), req.args);
      case 'replay': {
        // Same fingerprint, so the stored arguments equal these: no need to read and parse them. A run
        // that reads back the same is the same Run (views cache by it).
        const same =
          cache?.known !== undefined && cache.known.run.fingerprint === fp && sameRecord(cache.known.record, run);
        const built = same ? cache.known!.run : toRun(run, req.args, await this.resultOf(run));
        if (cache !== undefined && this.store.changeEpoch !== undefined)
          this.replayed.set(cache.cacheKey, { epoch: cache.epoch, record: run, run: built });
        if (!countReplay) return { kind: 'replayed', run: built };
        return this.replayOf(built);
      }
    }
  }

  async preview(req: CreateRequest): Promise<CreatePreview> {
    const fp = checkCreate(req);
    const seen = await this.store.read((s) => s.runByKey(keyOf(req)));
    if (!this.kept(seen)) return { kind: 'create', fingerprint: fp };
    const outcome = await this.answer(seen, req, fp, false);
    return outcome.kind === 'replayed' ? { kind: 'replay', run: outcome.run } : outcome;
  }

  /** Only a done run has a result, and it never changes: read once, then remembered. Inside a write, read through `tx`. */
  private async resultOf(run: Pick<RunRecord, 'id' | 'phase'>, tx?: StoreOps): Promise<JsonObject | null> {
    if (run.phase !== Phase.done) return null;
    const result =
      this.finishedResults.get(run.id) ??
      (await (tx === undefined ? this.store.read((s) => s.resultOf(run.id)) : tx.resultOf(run.id))) ??
      {};
    this.finishedResults.set(run.id, result);
    return result;
  }

  // ---- reading ---------------------------------------------------------------------------------

  private async fullRun(run: StoredRun, tx?: StoreOps): Promise<Run> {
    return toRun(run, run.args, await this.resultOf(run, tx));
  }

  async getRun(tenant: string, runId: string): Promise<Run> {
    return this.fullRun(visible(await this.store.read((s) => s.runById(runId)), tenant, runId));
  }

  async findRun(tenant: string, tool: string, idempotencyKey: string): Promise<Run> {
    assertValidKey(idempotencyKey);
    const run = await this.store.read((s) => s.runByKey({ tenant, executor: 'engine', tool, idempotencyKey }));
    if (!this.kept(run)) throw keyNotFound(tool);
    if (run.deletedAt !== null) throw deletedRunError(run.id);
    return toRun(run, await this.store.read((s) => s.argsOf(run.id)), await this.resultOf(run));
  }

  async listRuns(tenant: string, query: ListQuery = {}): Promise<RunPage> {
    const q = checkListQuery(query);
    const page = pageOf(await this.store.read((s) => s.page(tenant, q)), q.limit);
    return { runs: await Promise.all(page.runs.map((run) => this.fullRun(run))), nextCursor: page.nextCursor };
  }

  async listAssets(tenant: string, runId: string): Promise<AssetRef[]> {
    visible(await this.store.read((s) => s.runById(runId)), tenant, runId);
    return this.store.read((s) => s.assetsOf(runId));
  }

  async readAsset(tenant: string, runId: string, n: number): Promise<StoredAsset> {
    visible(await this.store.read((s) => s.runById(runId)), tenant, runId);
    const asset = await this.store.read((s) => s.assetBytes(runId, n));
    if (asset === undefined) throw assetNotFound(runId, n);
    return asset;
  }

  async usage(tenant: string): Promise<Usage> {
    await this.replays.flush();
    return usageOf(tenant, await this.store.read((s) => s.usageRows(tenant)));
  }

  // ---- the caller's changes --------------------------------------------------------------------

  async cancel(tenant: string, runId: string): Promise<{ run: Run; outcome: CancelOutcome }> {
    const answer = await this.store.write(async (tx) => {
      const run = visible(await tx.runById(runId, true), tenant, runId);
      const decision = cancelDecision(run.phase);
      if (decision !== 'cancel') return { run: await this.fullRun(run, tx), outcome: decision };
      return { run: (await this.move(tx, run, Phase.canceled, {})).run, outcome: 'canceled' as const };
    });
    if (answer.outcome === 'canceled') this.publish([{ runId, phase: Phase.canceled }]);
    return answer;
  }

  /** A live run is canceled first; its bytes that no other run uses go in the same commit. */
  async deleteRun(tenant: string, runId: string): Promise<void> {
    const phase = await this.store.write(async (tx) => {
      const found = visible(await tx.runById(runId, true), tenant, runId);
      const run = isTerminal(found.phase) ? found : (await this.move(tx, found, Phase.canceled, {})).record;
      const now = this.now();
      await tx.writeRun({ ...run, leaseOwner: null, leaseExpiresAt: null, deletedAt: now, updatedAt: now });
      await tx.dropOrphanAssets(await tx.clearRun(runId));
      return run.phase;
    });
    this.finishedResults.delete(runId);
    this.publish([{ runId, phase }]);
  }

  // ---- the worker's verbs ----------------------------------------------------------------------

  async claim<R extends RecoveryPoints = RecoveryPoints>(
    owner: string,
    only: ClaimFilter = {},
  ): Promise<ClaimedRun<R> | null> {
    return this.store.write(async (tx) => {
      const now = this.now();
      const next = await tx.nextClaimable(now, only.executor ?? 'engine', only.tools);
      if (next === undefined) return null;
      const run = leasedTo(next, owner, now, this.leaseMs);
      await tx.writeRun(run);
      return {
        ...toRun(run, next.args, null),
        recovery: (await tx.recoveryOf(run.id)) as Partial<R>,
        assets: await tx.assetsOf(run.id),
      };
    });
  }

  async claimRun(runId: string, owner: string): Promise<Run | null> {
    return this.store.write(async (tx) => {
      const now = this.now();
      const found = await tx.runById(runId, true);
      if (found === undefined || !isClaimable(found, now, holderGone)) return null;
      const run = leasedTo(found, owner, now, this.leaseMs);
      await tx.writeRun(run);
      return toRun(run, found.args, null);
    });
  }

  /** One transaction on a run `owner` holds; null, with nothing written, when it no longer does. */
  private held<T>(
    runId: string,
    owner: string,
    body: (tx: StoreOps, run: StoredRun) => Promise<T>,
    opts?: { durable?: boolean },
  ): Promise<T | null> {
    return this.store.write(async (tx) => {
      const run = await tx.runById(runId, true);
      return holdsLease(run, owner) ? body(tx, run) : null;
    }, opts);
  }

  async renew(runId: string, owner: string): Promise<boolean> {
    return (
      (await this.held(runId, owner, async (tx, run) =>
        tx.writeRun({ ...run, leaseExpiresAt: this.now() + this.leaseMs }),
      )) !== null
    );
  }

  async release(runId: string, owner: string): Promise<void> {
    await this.held(runId, owner, async (tx, run) => tx.writeRun(released(run)));
  }

  async advance(runId: string, owner: string, to: Phase, output?: object): Promise<Run | null> {
    if (isTerminal(to)) throw new InternalError(`advance cannot end a run (${to}); use finish, fail or cancel`);
    return this.heldMove(runId, owner, to, { output });
  }

  async checkpoint(runId: string, owner: string, name: string, value: object, progress?: number): Promise<boolean> {
    const rose = await this.held(runId, owner, async (tx, run) => {
      await tx.putRecovery(runId, { ...(await tx.recoveryOf(runId)), [name]: value });
      const next = progressed(run, progress ?? run.progress, this.now(), this.leaseMs);
      await tx.writeRun(next);
      return next.progress > run.progress ? run.phase : undefined;
    });
    // Progress is what followers are told of; a checkpoint that moves none is nobody's news.
    if (rose != null) this.publish([{ runId, phase: rose }]);
    return rose !== null;
  }

  async attachAsset(runId: string, owner: string, n: number, asset: NewAsset, progress: number): Promise<boolean> {
    const sha256 = createHash('sha256').update(asset.bytes).digest('hex');
    const phase = await this.held(runId, owner, async (tx, run) => {
      const now = this.now();
      await tx.attachAsset(runId, n, { sha256, mime: asset.mime, bytes: asset.bytes, meta: asset.meta }, now);
      await tx.writeRun(progressed(run, progress, now, this.leaseMs));
      return run.phase;
    });
    if (phase !== null) this.publish([{ runId, phase }]);
    return phase !== null;
  }

  finish(runId: string, owner: string, result: object, charge?: ChargeSource, durable = true): Promise<Run | null> {
    return this.heldMove(runId, owner, Phase.done, { result, charge }, durable);
  }

  fail(runId: string, owner: string, error: RunError): Promise<Run | null> {
    return this.heldMove(runId, owner, Phase.failed, { error });
  }

  async abandon(runId: string, owner: string, failure: RunError): Promise<Run | null> {
    const run = await this.held(runId, owner, async (tx, found) => {
      const after = afterFailedAttempt(found, failure, this.now(), this.leaseMs);
      if (after.giveUp !== null)
        return (await this.move(tx, { ...after.run, args: found.args }, Phase.failed, { error: after.giveUp })).run;
      await tx.writeRun(after.run);
      return toRun(after.run, found.args, null);
    });
    if (run !== null) this.publish([{ runId, phase: run.phase }]);
    return run;
  }

  async forget(runId: string, owner: string): Promise<boolean> {
    const gone =
      (await this.held(runId, owner, async (tx) => tx.dropOrphanAssets(await tx.deleteRuns([runId])))) !== null;
    if (gone) this.forgotten([runId]);
    return gone;
  }

  // ---- jobs at job providers ---------------------------------------------------------------------

  async attachJob(runId: string, owner: string, job: JobHandle): Promise<JobAttach> {
    const attached = await this.store.write(async (tx) => {
      const run = await tx.runById(runId, true);
      if (run === undefined || run.deletedAt !== null) return { job: null, held: false, phase: null };
      const held = holdsLease(run, owner);
      const existing = await tx.jobOf(runId);
      if (existing !== undefined) return { job: storedJob(existing), held, phase: null };
      const row: JobRow = {
        runId,
        provider: job.provider,
        jobId: job.jobId,
        fields: job.fields,
        createdAt: this.now(),
        cancelRequestedAt: null,
      };
      // Refused when the job is another run's: an orphan two runs found is adopted by one.
      if (!(await tx.insertJob(row))) return { job: null, held, phase: null };
      if (held) await tx.writeRun(progressed(run, run.progress, this.now(), this.leaseMs));
      return { job: storedJob(row), held, phase: run.phase };
    });
    if (attached.phase !== null) this.publish([{ runId, phase: attached.phase }]);
    return { job: attached.job, held: attached.held };
  }

  async jobOf(runId: string): Promise<StoredJob | null> {
    const row = await this.store.read((s) => s.jobOf(runId));
    return row === undefined ? null : storedJob(row);
  }

  async webhookDeliveries(runId: string): Promise<StoredDelivery[]> {
    return (await this.store.read((s) => s.deliveriesOf(runId, DELIVERIES_READ))).map(storedDelivery);
  }

  async claimJobCancel(runId: string): Promise<StoredJob | null> {
    return this.store.write(async (tx) => {
      const run = await tx.runById(runId, true);
      if (run?.phase !== Phase.canceled) return null;
      const job = await tx.jobOf(runId);
      if (job === undefined || !(await tx.markJobCancel(runId, this.now()))) return null;
      return storedJob({ ...job, cancelRequestedAt: this.now() });
    });
  }

  async jobsAwaitingCancel(): Promise<StoredJob[]> {
    return (await this.store.read((s) => s.jobsToCancel(CANCELS_READ))).map(storedJob);
  }

  async recordWebhook(delivery: WebhookDelivery): Promise<WebhookOutcome> {
    const outcome = await this.store.write(async (tx): Promise<WebhookOutcome & { phase?: Phase }> => {
      const byJob =
        delivery.runId === null && delivery.jobId !== null
          ? await tx.jobByProviderId(delivery.provider, delivery.jobId)
          : undefined;
      const runId = delivery.runId ?? byJob?.runId;
      const run = runId === undefined ? undefined : await tx.runById(runId, true);
      if (run === undefined || run.deletedAt !== null) return { kind: 'ignored', reason: 'unknown_run' };
      if (isTerminal(run.phase)) return { kind: 'ignored', reason: 'finished_run' };
      const job = byJob ?? (await tx.jobOf(run.id));
      if (
        job !== undefined &&
        delivery.jobId !== null &&
        (job.provider !== delivery.provider || job.jobId !== delivery.jobId)
      ) {
        return { kind: 'ignored', reason: 'other_job' };
      }
      const row: DeliveryRow = { ...delivery, runId: run.id, receivedAt: this.now() };
      if (!(await tx.insertDelivery(row))) return { kind: 'duplicate', runId: run.id };
      return { kind: 'stored', runId: run.id, phase: run.phase };
    });
    if (outcome.kind !== 'stored') return outcome;
    // The run's holder, on whichever replica, hears of it here and asks the provider at once.
    this.publish([{ runId: outcome.runId, phase: outcome.phase! }]);
    return { kind: 'stored', runId: outcome.runId };
  }

  private async heldMove(runId: string, owner: string, to: Phase, data: MoveData, durable = true): Promise<Run | null> {
    const run = await this.held(runId, owner, async (tx, found) => (await this.move(tx, found, to, data)).run, {
      durable,
    });
    // Committed: a replay of this run need not read the result it was just given.
    if (run?.result != null) this.finishedResults.set(runId, run.result);
    if (run !== null) this.publish([{ runId, phase: run.phase }]);
    return run;
  }

  /** One forward move inside a transaction: its timestamp, its recovery point or result, and on done the charge. */
  private async move(
    tx: StoreOps,
    run: StoredRun,
    to: Phase,
    data: MoveData,
  ): Promise<{ record: RunRecord; run: Run }> {
    const now = this.now();
    const next = moved(run, to, now, this.leaseMs, data.error);
    await tx.writeRun(next.run);
    let result: JsonObject | null = null;
    if (data.result !== undefined) {
      const json = JSON.stringify(data.result);
      await tx.putResult(run.id, json);
      // A copy, as a later read would give: the caller keeps its own object.
      result = JSON.parse(json) as JsonObject;
    } else if (next.dropRecovery) {
      await tx.putRecovery(run.id, null);
    } else if (data.output !== undefined) {
      await tx.putRecovery(run.id, { ...(await tx.recoveryOf(run.id)), [run.phase]: data.output });
    }
    if (next.charge) {
      await tx.charge({
        runId: run.id,
        tenant: run.tenant,
        tool: run.tool,
        credits: run.cost,
        provider: data.charge?.provider ?? null,
        model: data.charge?.model ?? null,
        at: now,
      });
      failpoint('billing', run.tool);
    }
    // The run as the writes above left it, without reading it back.
    return { record: next.run, run: toRun(next.run, run.args, result) };
  }

  // ---- housekeeping ----------------------------------------------------------------------------

  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { runsForgotten: 0, assetsRemoved: 0 };
    const cutoff = this.now() - this.retentionMs;
    for (;;) {
      const slice = await this.store.write(async (tx) => {
        const ids = await tx.expiredIds(cutoff, SWEEP_SLICE);
        return { ids, removed: await tx.dropOrphanAssets(await tx.deleteRuns(ids)) };
      });
      this.forgotten(slice.ids);
      report.runsForgotten += slice.ids.length;
      report.assetsRemoved += slice.removed;
      if (slice.ids.length < SWEEP_SLICE) break;
      // A turn of the event loop between slices: creates keep flowing.
      await new Promise((resolve) => setImmediate(resolve));
    }
    await this.store.events.dropEventsBefore(this.now() - EVENT_RETENTION_MS);
    await this.store.compact?.();
    return report;
  }

  async releaseDeadHolders(runId?: string): Promise<string[]> {
    const held = await this.store.read((s) => s.heldRuns(this.now()));
    const freed: RunChange[] = [];
    for (const { id, owner } of held.filter((h) => (runId === undefined || h.id === runId) && holderGone(h.owner))) {
      const phase = await this.held(id, owner, async (tx, run) => {
        await tx.writeRun(released(run));
        return run.phase;
      });
      if (phase !== null) freed.push({ runId: id, phase });
    }
    if (freed.length > 0) this.publish(freed);
    return freed.map((change) => change.runId);
  }

  /** Runs gone from the store: nothing remembered of them may answer again. */
  private forgotten(runIds: readonly string[]): void {
    for (const id of runIds) {
      this.replays.forget(id);
      this.finishedResults.delete(id);
    }
  }

  // ---- stream events ---------------------------------------------------------------------------

  appendEvent(scope: string, streamId: string, message: string): Promise<string> {
    return this.store.events.appendEvent(scope, streamId, message, this.now());
  }

  eventStreamOf(scope: string, eventId: string): Promise<string | null> {
    return this.store.events.eventStreamOf(scope, eventId);
  }

  eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]> {
    return this.store.events.eventsAfter(scope, streamId, afterEventId);
  }

  ping(): Promise<void> {
    return this.store.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.replays.close();
    await this.store.close();
  }
}
