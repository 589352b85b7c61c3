// The search for a job whose submit was sent but whose answer was never stored (the process died in
// between, or the answer was lost): never a second submit, but a look, until the bound, for the one job
// that is surely the run's; failing that the run ends outcome_unknown, unbilled.
import { JobOutcomeUnknownError } from '../../errors.js';
import type { JobHandle, StoredJob } from '../../ledger/index.js';
import {
  JobRefused,
  ProviderBusy,
  type JobProvider,
  type JobRequest,
  type OrphanCandidate,
} from '../../providers/jobs.js';
import { adopt } from './adopt.js';
import { webhookUrl, type JobContext, type JobRun, type Submitting } from './context.js';

/**
 * The submit was sent but its answer never stored. Looks, until the bound, for a job that is surely
 * this run's: one a webhook named the run for, or one the list endpoint shows carrying the run id, or
 * the only one with the submitted input made around the submit. Never submits again.
 */
export async function findOrphan(
  ctx: JobContext,
  run: JobRun,
  owner: string,
  provider: JobProvider,
  point: Submitting,
  request: JobRequest,
  signal: AbortSignal,
  held: (ok: unknown) => void,
): Promise<StoredJob> {
  const submittedAt = Date.parse(point.at);
  const deadline = submittedAt + ctx.opts.orphanSearchMs;
  const body = provider.submitBody(request, run.id, point.webhook ? webhookUrl(ctx, provider, run.id) : null);
  const searchedBy = [
    ...(point.webhook ? ['webhooks naming the run'] : []),
    ...(provider.canList ? ['the list endpoint'] : []),
  ];
  ctx.log.warn('a submit was sent but its job was never stored: looking for the job, not submitting again', {
    run_id: run.id,
    provider: provider.id,
    submitted_at: point.at,
    until: new Date(deadline).toISOString(),
    by: searchedBy,
  });
  const rejected = new Set<string>();
  const seen = new Set<string>();
  let ambiguous: string[];
  let pause = 250;
  for (;;) {
    const candidates: (OrphanCandidate | { handle: JobHandle; by: 'webhook' })[] = [];
    for (const d of await ctx.ledger.webhookDeliveries(run.id)) {
      if (d.provider === provider.id && d.jobId !== null)
        candidates.push({ handle: { provider: provider.id, jobId: d.jobId, fields: {} }, by: 'webhook' });
    }
    if (provider.canList) {
      try {
        candidates.push(...(await provider.findOrphans({ runId: run.id, submittedBody: body, submittedAt, signal })));
      } catch (err) {
        if (!(err instanceof ProviderBusy || err instanceof JobRefused)) throw err;
        ctx.log.warn("could not read the provider's list of jobs; trying again", {
          run_id: run.id,
          error: err.message,
        });
      }
    }
    const open = candidates.filter((c) => !rejected.has(c.handle.jobId));
    const sure = open.filter((c) => c.by !== 'input_and_time');
    const byInput = [
      ...new Map(open.filter((c) => c.by === 'input_and_time').map((c) => [c.handle.jobId, c])).values(),
    ];
    ambiguous = byInput.length > 1 ? byInput.map((c) => c.handle.jobId) : [];
    const pick = sure[0] ?? (byInput.length === 1 ? byInput[0] : undefined);
    if (pick !== undefined) {
      // The provider itself must know the job (a webhook's word is not enough).
      try {
        await provider.status(pick.handle, signal);
        const job = await adopt(ctx, run, owner, pick.handle, held);
        if (job !== null) {
          ctx.log.info('adopted the orphaned job: no second submit', {
            run_id: run.id,
            job_id: job.jobId,
            found_by: pick.by,
          });
          return job;
        }
        rejected.add(pick.handle.jobId); // another run's
      } catch (err) {
        if (err instanceof JobRefused) rejected.add(pick.handle.jobId);
        else if (!(err instanceof ProviderBusy)) throw err;
      }
      continue;
    }
    const left = deadline - Date.now();
    // With no webhook asked for and no list to read, nothing can turn up: no reason to wait out the bound.
    if (left <= 0 || searchedBy.length === 0) {
      throw new JobOutcomeUnknownError({
        provider: provider.id,
        runId: run.id,
        tool: run.tool,
        submittedAt: point.at,
        searchedMs: Date.now() - submittedAt,
        searchedBy:
          searchedBy.length > 0
            ? searchedBy
            : ['nothing: this provider has no list endpoint and the submit asked for no webhook'],
        candidates: ambiguous,
      });
    }
    await ctx.news.waitForNews(run.id, Math.min(pause, left), signal, seen);
    pause = Math.min(pause * 2, 5000);
  }
}
