// Runs carried out by a job provider (a queue API with no idempotency keys: Replicate, fal). The
// submit is the paid step, and it is made once per run, whatever crashes:
//
//   composing   the job request, stored on leaving (the composing recovery point)
//   rendering   "job/submitting" stored (durably) BEFORE the submit; the job's handle stored the moment
//               the submit answers (run_jobs); then its status, polled (and hastened by webhooks),
//               each new status a recovery point that moves the run's progress; on success the
//               outputs fetched and attached at once (the provider's URLs expire); images scored
//   done        the result and the run's one charge
//
// A run resumed with a handle never submits again: it polls. A run resumed in "submitting" without a
// handle (the process died between the submit and storing its answer) looks for its orphan — a webhook
// that named the run, a list endpoint matched by run id or by input and time — until the bound, then
// ends outcome_unknown, unbilled; only a provider that honours idempotency keys is sent the submit
// again, with the run id as the key. A submit in flight is never cut short (not by a cancel, not by a
// shutdown): its answer is what lets the job be followed or canceled.
//
// This file runs those steps in order. Each lives in a file beside it (submit.ts with orphans.ts and
// adopt.ts, status.ts, outputs.ts; cancels.ts for a canceled run's job), handed what they share
// (context.ts, news.ts) in place of the runner.
import { failpoint } from '../../failpoints.js';
import { Phase, type AssetRef } from '../../ledger/index.js';
import type { JobProvider } from '../../providers/jobs.js';
import type { Evaluation } from '../../rubric/index.js';
import { seedOf, type AssetSummary, type RunResult } from '../../run-result.js';
import { imageJobPlan, type GenerationTool } from '../../tool.js';
import { cancelUpstream, sweepCancels } from './cancels.js';
import type { JobContext, JobRun, JobRunnerOptions, Unscored } from './context.js';
import { RunNews } from './news.js';
import { evaluate, keepOutputs } from './outputs.js';
import { follow } from './status.js';
import { obtainJob } from './submit.js';

const evaluationPoint = (n: number) => `evaluation/${n}` as const;

export class JobRunner {
  private readonly ctx: JobContext;

  constructor(opts: JobRunnerOptions) {
    this.ctx = { ledger: opts.ledger, log: opts.log, opts, news: new RunNews(opts.ledger, opts.log) };
  }

  /** The engine heard a change of this run: a waiting follower looks for a new webhook. */
  heard(runId: string): void {
    this.ctx.news.heard(runId);
  }

  /** Runs the remaining steps of a job run; `held` throws when the run is no longer this worker's. */
  async execute(
    run: JobRun,
    owner: string,
    tool: GenerationTool,
    provider: JobProvider,
    signal: AbortSignal,
    held: (ok: unknown) => void,
    step: { now: string },
    delay: () => Promise<void>,
  ): Promise<void> {
    const { ctx } = this;
    const args = tool.input.parse(run.args);
    const seed = seedOf(run);
    if (run.phase === Phase.queued) held(await ctx.ledger.advance(run.id, owner, Phase.composing));
    let plan = run.recovery[Phase.composing]?.job;
    if (plan === undefined || run.phase === Phase.queued || run.phase === Phase.composing) {
      step.now = 'composing the job request';
      await delay();
      plan = tool.kind === 'job' ? tool.job(args, seed) : imageJobPlan(tool.prompt(args), seed);
      held(await ctx.ledger.advance(run.id, owner, Phase.rendering, { job: plan }));
    }

    let job = await ctx.ledger.jobOf(run.id);
    if (job !== null) {
      ctx.log.info('resuming a run whose job was submitted: following it, never submitting again', {
        run_id: run.id,
        job_id: job.jobId,
      });
    } else {
      step.now = 'submitting the job';
      job = await obtainJob(ctx, run, owner, provider, plan, signal, held);
    }

    step.now = `waiting for job ${job.jobId}`;
    const final = await follow(ctx, run, owner, provider, job, signal, held);

    step.now = 'fetching the outputs';
    const { assets, poster } = await keepOutputs(ctx, run, owner, provider, job, final, signal, held);
    // A poster frame stands for a video only when there is one video it can belong to.
    const videos = assets.filter((a) => a.mime.startsWith('video/'));
    const posterOf = (a: AssetRef) => (poster !== null && videos.length === 1 && videos[0] === a ? poster : null);

    const evaluations = new Map<number, Evaluation | Unscored>();
    for (const asset of assets) {
      step.now = `scoring output ${asset.n + 1} of ${assets.length}`;
      const stored = run.recovery[evaluationPoint(asset.n)];
      const evaluation =
        stored ?? (await evaluate(ctx, run, tool, args, plan, asset, posterOf(asset), provider, signal));
      if (stored === undefined)
        held(
          await ctx.ledger.checkpoint(
            run.id,
            owner,
            evaluationPoint(asset.n),
            evaluation,
            0.9 + (0.09 * (asset.n + 1)) / assets.length,
          ),
        );
      evaluations.set(asset.n, evaluation);
    }

    failpoint('finish', run.tool);
    const scored = assets.flatMap((a) => {
      const e = evaluations.get(a.n);
      return e === undefined || 'unscored' in e ? [] : [{ n: a.n, ...e }];
    });
    const result: RunResult = {
      seed,
      generator: { provider: provider.id, version: provider.version, model: provider.model },
      job: { provider: job.provider, id: job.jobId },
      assets: assets.map((a) => summary(a)),
      evaluation: {
        score: scored.length === 0 ? null : scored.reduce((sum, e) => sum + e.score, 0) / scored.length,
        passed: scored.reduce((sum, e) => sum + e.passed, 0),
        tested: scored.reduce((sum, e) => sum + e.tested, 0),
        variants: scored,
        unscored: assets.flatMap((a) => {
          const e = evaluations.get(a.n);
          return e !== undefined && 'unscored' in e ? [{ n: a.n, mime: a.mime, reason: e.unscored }] : [];
        }),
      },
    };
    const finished = await ctx.ledger.finish(run.id, owner, result, { provider: provider.id, model: provider.model });
    if (finished !== null)
      ctx.log.info('run done', { run_id: run.id, tool: run.tool, job_id: job.jobId, score: result.evaluation.score });
  }

  /** The engine heard the run was canceled: its job is canceled upstream too, by one replica (cancels.ts). */
  cancelUpstream(runId: string): Promise<void> {
    return cancelUpstream(this.ctx, runId);
  }

  /** The engine's periodic look for canceled runs' jobs still running upstream (cancels.ts). */
  sweepCancels(): Promise<void> {
    return sweepCancels(this.ctx);
  }
}

function summary(a: AssetRef): AssetSummary {
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  const duration = num(a.meta.duration_seconds);
  return {
    n: a.n,
    sha256: a.sha256,
    mime: a.mime,
    size: a.size,
    width: num(a.meta.width),
    height: num(a.meta.height),
    ...(duration === null ? {} : { duration_seconds: duration }),
  };
}
