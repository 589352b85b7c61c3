// The submit (the paid step) and the request it sends. Whether a resumed run submits afresh, sends the
// same key again, or looks for its orphan (orphans.ts) is decided here, from its "job/submitting" point.
import { setTimeout as sleep } from 'node:timers/promises';
import { asRunledgerError, GenerationFailedError } from '../../errors.js';
import { failpoint } from '../../failpoints.js';
import { Phase, type JobHandle, type RunError, type StoredJob } from '../../ledger/index.js';
import { NotSubmitted, SubmitOutcomeUnknown, type JobProvider, type JobRequest } from '../../providers/jobs.js';
import type { JobPlan } from '../../tool.js';
import { adopt } from './adopt.js';
import { jittered, webhookUrl, type JobContext, type JobRun, type Submitting } from './context.js';
import { findOrphan } from './orphans.js';

/** Images of earlier runs sent as data: URIs are kept this small. */
const RUN_IMAGE_MAX_BYTES = 10 * 1024 * 1024;
/** How long a run waits for an earlier run it takes an image from to finish. */
const RUN_IMAGE_WAIT_MS = 10 * 60_000;

/** The run's job: submitted now, or, after a submit that may have made one, sent again or looked for. */
export async function obtainJob(
  ctx: JobContext,
  run: JobRun,
  owner: string,
  provider: JobProvider,
  plan: JobPlan,
  signal: AbortSignal,
  held: (ok: unknown) => void,
): Promise<StoredJob> {
  const request = await resolveRequest(ctx, run, plan, signal);
  const point = run.recovery['job/submitting'];
  if (point !== undefined && point.none !== true) {
    if (provider.honoursKeys) {
      ctx.log.info(
        'the last submit may have made a job; sending it again with the same key, which the provider honours',
        { run_id: run.id, provider: provider.id },
      );
      return submit(ctx, run, owner, provider, request, signal, held);
    }
    return findOrphan(ctx, run, owner, provider, point, request, signal, held);
  }
  return submit(ctx, run, owner, provider, request, signal, held);
}

async function submit(
  ctx: JobContext,
  run: JobRun,
  owner: string,
  provider: JobProvider,
  request: JobRequest,
  signal: AbortSignal,
  held: (ok: unknown) => void,
): Promise<StoredJob> {
  const url = webhookUrl(ctx, provider, run.id);
  for (let attempt = 1; ; attempt++) {
    const point: Submitting = { at: new Date().toISOString(), provider: provider.id, webhook: url !== null };
    // Stored, and on disk, before the paid step: a run resumed after a crash now knows a job may exist.
    held(await ctx.ledger.checkpoint(run.id, owner, 'job/submitting', point));
    failpoint('submit', run.tool);
    let handle: JobHandle;
    try {
      // Never cut short: an answer that arrives is stored, whatever happened meanwhile.
      handle = await provider.submit(request, { runId: run.id, webhookUrl: url, signal: new AbortController().signal });
    } catch (err) {
      if (err instanceof NotSubmitted) {
        // Certainly no job: said so, so that whoever tries next may submit again.
        await ctx.ledger.checkpoint(run.id, owner, 'job/submitting', { ...point, none: true }).catch(() => false);
        throw new AttemptFailed(
          new GenerationFailedError(`${provider.id} would not take the job: ${err.message}`, {
            provider: provider.id,
          }).toJSON(),
        );
      }
      if (err instanceof SubmitOutcomeUnknown) {
        if (provider.honoursKeys && attempt < 4) {
          ctx.log.warn('the submit may or may not have made a job; sending it again with the same key', {
            run_id: run.id,
            provider: provider.id,
            error: err.message,
          });
          await sleep(jittered(1000 * 2 ** attempt), undefined, { signal });
          continue;
        }
        ctx.log.warn('the submit may or may not have made a job: looking for it rather than submitting again', {
          run_id: run.id,
          provider: provider.id,
          error: err.message,
        });
        return findOrphan(ctx, run, owner, provider, point, request, signal, held);
      }
      throw err;
    }
    failpoint('submitted', run.tool);
    const job = await adopt(ctx, run, owner, handle, held);
    if (job === null)
      throw new GenerationFailedError(
        `${provider.id} answered the submit with job ${handle.jobId}, which another run holds.`,
        { provider: provider.id, job_id: handle.jobId },
      );
    ctx.log.info('job submitted', {
      run_id: run.id,
      provider: provider.id,
      job_id: job.jobId,
      webhook: url !== null,
    });
    return job;
  }
}

/** The request with the images of earlier runs it names read in, as data: URIs. */
async function resolveRequest(ctx: JobContext, run: JobRun, plan: JobPlan, signal: AbortSignal): Promise<JobRequest> {
  const request: JobRequest = { ...plan.fields };
  for (const [field, ref] of Object.entries(plan.runImages)) {
    const deadline = Date.now() + RUN_IMAGE_WAIT_MS;
    let source = await ctx.ledger.getRun(run.tenant, ref.run_id).catch((err: unknown) => {
      throw new GenerationFailedError(`${field}: ${asRunledgerError(err).message}`, { field, run_id: ref.run_id });
    });
    // A run named while it is still going is waited for: an agent may ask for both at once.
    while (source.phase !== Phase.done) {
      if (source.phase === Phase.failed || source.phase === Phase.canceled) {
        throw new GenerationFailedError(`${field}: run ${ref.run_id} ${source.phase}; it has no image to start from.`, {
          field,
          run_id: ref.run_id,
        });
      }
      if (Date.now() > deadline)
        throw new GenerationFailedError(
          `${field}: run ${ref.run_id} was not done within ${RUN_IMAGE_WAIT_MS / 60_000} minutes.`,
          { field, run_id: ref.run_id },
        );
      await ctx.news.waitForNews(ref.run_id, 500, signal, null);
      source = await ctx.ledger.getRun(run.tenant, ref.run_id);
    }
    const asset = await ctx.ledger.readAsset(run.tenant, ref.run_id, ref.n).catch(() => {
      throw new GenerationFailedError(`${field}: run ${ref.run_id} has no image ${ref.n}.`, {
        field,
        run_id: ref.run_id,
        n: ref.n,
      });
    });
    if (!asset.mime.startsWith('image/'))
      throw new GenerationFailedError(`${field}: asset ${ref.n} of run ${ref.run_id} is ${asset.mime}, not an image.`, {
        field,
      });
    if (asset.bytes.byteLength > RUN_IMAGE_MAX_BYTES)
      throw new GenerationFailedError(`${field}: the image is larger than ${RUN_IMAGE_MAX_BYTES} bytes.`, { field });
    request[field] = `data:${asset.mime};base64,${asset.bytes.toString('base64')}`;
  }
  return request;
}

/** An attempt that failed for the run's own reason but perhaps not for good: tried again after a back-off, failed at the bound. */
export class AttemptFailed extends Error {
  constructor(readonly failure: RunError) {
    super(failure.message);
    this.name = 'AttemptFailed';
  }
}
