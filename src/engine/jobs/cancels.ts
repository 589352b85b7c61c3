// A canceled run's job is canceled at its provider too, by whichever replica claims the cancel first;
// a sweep picks up cancels nobody here heard of.
import { setTimeout as sleep } from 'node:timers/promises';
import { asRunledgerError } from '../../errors.js';
import type { StoredJob } from '../../ledger/index.js';
import { ProviderBusy } from '../../providers/jobs.js';
import { jittered, type JobContext } from './context.js';

/** Tries of a job's cancel the provider answered 5xx/429. */
const CANCEL_ATTEMPTS = 4;

/** Sends the provider the cancel of a canceled run's job, when this process is the one (of all replicas) to claim it. */
export async function cancelUpstream(ctx: JobContext, runId: string): Promise<void> {
  let job: StoredJob | null;
  try {
    job = await ctx.ledger.claimJobCancel(runId);
  } catch (err) {
    ctx.log.warn("could not claim a job's cancel", { run_id: runId, error: asRunledgerError(err).message });
    return;
  }
  if (job === null) return;
  const provider = ctx.opts.providers.named(job.provider);
  if (provider?.kind !== 'job' || !provider.canCancel) {
    ctx.log.warn(
      provider?.kind === 'job'
        ? "a canceled run's job runs on upstream: its provider's definition has no cancel"
        : "a canceled run's job is at a provider this server does not know: it was not canceled upstream",
      { run_id: runId, provider: job.provider, job_id: job.jobId },
    );
    return;
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const outcome = await provider.cancel(job, AbortSignal.timeout(provider.definition.timeout_ms));
      ctx.log.info(
        outcome === 'canceled' ? 'canceled the job upstream' : 'the job had ended upstream before its cancel',
        { run_id: runId, provider: provider.id, job_id: job.jobId },
      );
      return;
    } catch (err) {
      if (!(err instanceof ProviderBusy) || attempt >= CANCEL_ATTEMPTS) {
        ctx.log.warn('could not cancel the job upstream', {
          run_id: runId,
          provider: provider.id,
          job_id: job.jobId,
          error: (err as Error).message,
        });
        return;
      }
      await sleep(Math.max(err.waitMs ?? 0, jittered(1000 * 2 ** attempt)));
    }
  }
}

/** Cancels nobody here heard of (another process served the cancel, or the handle was stored after it). */
export async function sweepCancels(ctx: JobContext): Promise<void> {
  const jobs = await ctx.ledger.jobsAwaitingCancel();
  await Promise.all(jobs.map((job) => cancelUpstream(ctx, job.runId)));
}
