// The one Ledger: every verb written once over a LedgerStore. Each verb validates, runs one store
// transaction that reads, applies the pure rules (rules.ts) and writes, then announces the change, then
// updates what this process remembers (results of finished runs, keys it has met, replays to count).
// Here: the fence, the caller's reads and changes, housekeeping and stream events; the worker's verbs
// are WorkerVerbs' (worker-verbs.ts), the machinery they all share is LedgerCore's (ledger-core.ts).
import { BoundedMap } from '../bounded-map.js';
import { InternalError } from '../errors.js';
import { assertValidKey, fingerprint } from './fingerprint.js';
import { holderGone } from './holders.js';
import { isTerminal, Phase } from './phases.js';
import type { RunLedger } from './ports.js';
import {
  assetNotFound,
  cancelDecision,
  checkCreate,
  checkListQuery,
  conflictOf,
  deletedRunError,
  EVENT_RETENTION_MS,
  isExpired,
  judgeExisting,
  keyNotFound,
  keyOf,
  newRecord,
  pageOf,
  released,
  sameRecord,
  toRun,
  usageOf,
  visible,
} from './rules.js';
import type { RunRecord, StoreOps, StoredRun } from './store.js';
import type {
  AssetRef,
  CancelOutcome,
  Conflict,
  CreateOutcome,
  CreatePreview,
  CreateRequest,
  JsonObject,
  ListQuery,
  Run,
  RunChange,
  RunPage,
  StoredAsset,
  StoredEvent,
  SweepReport,
  Usage,
} from './types.js';
import { WorkerVerbs } from './worker-verbs.js';

type Replayed = Extract<CreateOutcome, { kind: 'replayed' }>;

/**
 * The run each replayed key was last answered with, the record it was built from, and the store's
 * change epoch before that record was read: while nothing was committed since, a replay reads nothing.
 */
type KnownReplay = { epoch: number; record: RunRecord; run: Run };
type ReplayCacheEntry = { cacheKey: string; epoch: number; known: KnownReplay | undefined };

/** Sweeps delete in slices, so a large sweep never holds the write lock for long. */
const SWEEP_SLICE = 500;

export class Ledger extends WorkerVerbs implements RunLedger {
  /** Keys this process has created or answered: a retry of one is read before anything is written. */
  private readonly knownKeys = new BoundedMap<string, true>(16_384);
  private readonly replayed = new BoundedMap<string, KnownReplay>(4096);

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
}
