// Taking a job as the run's: its handle stored the moment it is known (from the submit's answer, or
// from the orphan search), so that a resumed run follows it and never submits again.
import type { JobHandle, StoredJob } from '../../ledger/index.js';
import { cancelUpstream } from './cancels.js';
import type { JobContext, JobRun, StatusPoint } from './context.js';

/** Stores the job as the run's; null when it is another run's. Throws when the run is no longer this worker's (after asking for a cancel if it was canceled). */
export async function adopt(
  ctx: JobContext,
  run: JobRun,
  owner: string,
  handle: JobHandle,
  held: (ok: unknown) => void,
): Promise<StoredJob | null> {
  const attached = await ctx.ledger.attachJob(run.id, owner, handle);
  if (!attached.held) {
    // Canceled while the submit was out: the job now stored is canceled upstream too.
    void cancelUpstream(ctx, run.id);
    held(false);
  }
  if (attached.job === null) return null;
  if (attached.job.jobId !== handle.jobId) {
    ctx.log.warn('the run already had a job; keeping the first', {
      run_id: run.id,
      kept: attached.job.jobId,
      other: handle.jobId,
    });
  }
  held(
    await ctx.ledger.checkpoint(
      run.id,
      owner,
      'job/status',
      { state: 'queued', text: 'submitted', at: new Date().toISOString() } satisfies StatusPoint,
      0.55,
    ),
  );
  return attached.job;
}
