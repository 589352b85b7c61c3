// Following a submitted job until it ends: its status polled with a growing interval, asked sooner when
// a webhook names the run, each new status a recovery point that moves the run's progress.
import { GenerationFailedError } from '../../errors.js';
import type { StoredJob } from '../../ledger/index.js';
import { JobRefused, ProviderBusy, type JobProvider, type JobStatus } from '../../providers/jobs.js';
import { jittered, type JobContext, type JobRun, type StatusPoint } from './context.js';

/** Progress a job's status stands for: rendering spans 0.5 → 1; the job itself 0.55 → 0.9, outputs and scoring the rest. */
function progressOf(status: Pick<JobStatus, 'state' | 'progress'>): number {
  switch (status.state) {
    case 'queued':
      return 0.55;
    case 'running':
      return 0.6 + 0.28 * (status.progress ?? 0);
    default:
      return 0.9;
  }
}

/** Polls until the job ends, sooner when a webhook names the run. Returns the status of a job that succeeded. */
export async function follow(
  ctx: JobContext,
  run: JobRun,
  owner: string,
  provider: JobProvider,
  job: StoredJob,
  signal: AbortSignal,
  held: (ok: unknown) => void,
): Promise<JobStatus> {
  const def = provider.definition;
  const started = Date.parse(job.createdAt);
  const seen = new Set((await ctx.ledger.webhookDeliveries(run.id)).map((d) => d.webhookId));
  let last = run.recovery['job/status']?.text;
  let interval = def.poll.interval_ms;
  let failures = 0;
  for (;;) {
    const overdue = Date.now() - started > def.max_job_ms;
    let status: JobStatus;
    try {
      status = await provider.status(job, signal);
      failures = 0;
    } catch (err) {
      if (!(err instanceof ProviderBusy)) throw err;
      if (overdue)
        throw new GenerationFailedError(
          `The status of ${provider.id} job ${job.jobId} could not be read for ${Math.round(def.max_job_ms / 1000)} s: ${err.message}`,
          { provider: provider.id, job_id: job.jobId },
        );
      failures++;
      // The same handle, after a back-off that grows with failures in a row; Retry-After wins when longer.
      const wait = Math.max(
        err.waitMs ?? 0,
        jittered(Math.min(def.poll.max_interval_ms * 4, def.poll.interval_ms * 2 ** failures)),
      );
      ctx.log.warn("reading the job's status failed; reading the same job again after a back-off", {
        run_id: run.id,
        job_id: job.jobId,
        failures,
        wait_ms: Math.round(wait),
        error: err.message,
      });
      await ctx.news.waitForNews(run.id, wait, signal, seen);
      continue;
    }
    if (status.text !== last) {
      last = status.text;
      const point: StatusPoint = { state: status.state, text: status.text, at: new Date().toISOString() };
      held(await ctx.ledger.checkpoint(run.id, owner, 'job/status', point, progressOf(status)));
    }
    if (status.state === 'succeeded') return status;
    if (status.state === 'failed') {
      throw new JobRefused(`${provider.id} job ${job.jobId} failed: ${status.error ?? status.text}`, {
        provider: provider.id,
        job_id: job.jobId,
        status: status.text,
      });
    }
    if (status.state === 'canceled')
      throw new JobRefused(`${provider.id} job ${job.jobId} was canceled upstream (${status.text}).`, {
        provider: provider.id,
        job_id: job.jobId,
      });
    if (overdue) {
      await provider.cancel(job, AbortSignal.timeout(def.timeout_ms)).catch(() => 'too_late');
      throw new GenerationFailedError(
        `${provider.id} job ${job.jobId} did not finish within ${Math.round(def.max_job_ms / 1000)} s; it was canceled.`,
        { provider: provider.id, job_id: job.jobId },
      );
    }
    await ctx.news.waitForNews(run.id, jittered(interval * 2), signal, seen);
    interval = Math.min(def.poll.max_interval_ms, Math.round(interval * 1.5));
  }
}
