// The worker port's verbs: leasing runs, moving them on under the lease, ending them; and the jobs a
// job provider carries out for them, with the webhooks that name those jobs. Ledger (ledger.ts) adds
// the caller's verbs on top; the shared machinery (held, move, publish) is LedgerCore's.
import { createHash } from 'node:crypto';
import { InternalError } from '../errors.js';
import { holderGone } from './holders.js';
import { LedgerCore, type MoveData } from './ledger-core.js';
import { isTerminal, Phase } from './phases.js';
import type { ClaimFilter } from './ports.js';
import { afterFailedAttempt, holdsLease, isClaimable, leasedTo, progressed, released, toRun } from './rules.js';
import type { DeliveryRow, JobRow } from './store.js';
import type {
  ChargeSource,
  ClaimedRun,
  JobAttach,
  JobHandle,
  NewAsset,
  RecoveryPoints,
  Run,
  RunError,
  StoredDelivery,
  StoredJob,
  WebhookDelivery,
  WebhookOutcome,
} from './types.js';

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

export abstract class WorkerVerbs extends LedgerCore {
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

  private async heldMove(runId: string, owner: string, to: Phase, data: MoveData, durable = true): Promise<Run | null> {
    const run = await this.held(runId, owner, async (tx, found) => (await this.move(tx, found, to, data)).run, {
      durable,
    });
    // Committed: a replay of this run need not read the result it was just given.
    if (run?.result != null) this.finishedResults.set(runId, run.result);
    if (run !== null) this.publish([{ runId, phase: run.phase }]);
    return run;
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
}
