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
import { setTimeout as sleep } from 'node:timers/promises';
import { asRunledgerError, GenerationFailedError, JobOutcomeUnknownError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import {
  Phase,
  type AssetRef,
  type CallerPort,
  type ChangeSource,
  type ClaimedRun,
  type JobHandle,
  type RunError,
  type StoredJob,
  type WorkerPort,
} from '../ledger/index.js';
import type { Logger } from '../log.js';
import {
  JobRefused,
  NotSubmitted,
  ProviderBusy,
  SubmitOutcomeUnknown,
  type JobProvider,
  type JobRequest,
  type JobStatus,
  type OrphanCandidate,
} from '../providers/jobs.js';
import type { ProviderSet } from '../providers/index.js';
import { fetchOutput, mediaFacts, OutputFailed } from '../providers/media.js';
import type { Evaluation } from '../rubric/index.js';
import { seedOf, type AssetSummary, type RunResult } from '../run-result.js';
import { imageJobPlan, type GenerationTool, type JobPlan } from '../tool.js';
import type { ThreadPool } from './threads.js';

export type JobsLedger = WorkerPort & ChangeSource & Pick<CallerPort, 'getRun'>;

/** "job/submitting": a submit is about to be sent, so a resumed run knows one may exist. */
interface Submitting {
  at: string;
  provider: string;
  /** Whether the submit asked for webhooks (its URL names the run). */
  webhook: boolean;
  /** The last submit certainly made no job (refused at the door): a resumed run may submit again. */
  none?: true;
}

/** "job/status": the job's last status seen, and what it made of the run's progress. */
interface StatusPoint {
  state: JobStatus['state'];
  text: string;
  at: string;
}

/** An output not scored, and why: never a made-up score. */
interface Unscored {
  unscored: string;
}

type JobRecovery = {
  [Phase.composing]: { job: JobPlan };
  'job/submitting': Submitting;
  'job/status': StatusPoint;
  [output: `evaluation/${number}`]: Evaluation | Unscored;
};

/** A claimed run, as a job run reads its recovery points. */
export type JobRun = ClaimedRun<JobRecovery>;

export interface JobRunnerOptions {
  ledger: JobsLedger;
  providers: ProviderSet;
  threads: ThreadPool;
  log: Logger;
  /** The public base URL a provider sends webhooks to (…/webhooks/<provider>?run=<id>); null: polling only. */
  publicUrl: string | null;
  /** How long a run resumed without its job's handle looks for the job before ending outcome_unknown. */
  orphanSearchMs: number;
  /** The largest output fetched and stored. */
  maxOutputBytes: number;
}

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

/** Scores what the rubric reads (PNG, JPEG); for anything else, says why not. */
const SCORABLE = new Set(['image/png', 'image/jpeg']);

/** A wait of `ms` with half of it jittered: retries spread out, yet each waits at least half. */
const jittered = (ms: number) => ms / 2 + (Math.random() * ms) / 2;

const evaluationPoint = (n: number) => `evaluation/${n}` as const;

/** Images of earlier runs sent as data: URIs are kept this small. */
const RUN_IMAGE_MAX_BYTES = 10 * 1024 * 1024;
/** How long a run waits for an earlier run it takes an image from to finish. */
const RUN_IMAGE_WAIT_MS = 10 * 60_000;
/** Tries of one output download the host answered 5xx, or did not answer. */
const FETCH_ATTEMPTS = 4;
/** The least time one output download is given. */
const DOWNLOAD_TIMEOUT_MS = 5 * 60_000;
/** Tries of a job's cancel the provider answered 5xx/429. */
const CANCEL_ATTEMPTS = 4;

export class JobRunner {
  private readonly ledger: JobsLedger;
  private readonly log: Logger;
  /** Who waits on each run: woken by any change of it the ledger hears of (a webhook, from any replica). */
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(private readonly opts: JobRunnerOptions) {
    this.ledger = opts.ledger;
    this.log = opts.log;
  }

  /** The engine heard a change of this run: a waiting follower looks for a new webhook. */
  heard(runId: string): void {
    for (const wake of this.waiters.get(runId) ?? []) wake();
  }

  webhookUrl(provider: JobProvider, runId: string): string | null {
    if (this.opts.publicUrl === null || !provider.asksForWebhooks || provider.webhooks === null) return null;
    return `${this.opts.publicUrl.replace(/\/+$/, '')}/webhooks/${provider.id}?run=${encodeURIComponent(runId)}`;
  }

  /** Runs the remaining steps of a job run; `held` throws when the run is no longer this worker's. */
  async execute(
    run: ClaimedRun<JobRecovery>,
    owner: string,
    tool: GenerationTool,
    provider: JobProvider,
    signal: AbortSignal,
    held: (ok: unknown) => void,
    step: { now: string },
    delay: () => Promise<void>,
  ): Promise<void> {
    const args = tool.input.parse(run.args);
    const seed = seedOf(run);
    if (run.phase === Phase.queued) held(await this.ledger.advance(run.id, owner, Phase.composing));
    let plan = run.recovery[Phase.composing]?.job;
    if (plan === undefined || run.phase === Phase.queued || run.phase === Phase.composing) {
      step.now = 'composing the job request';
      await delay();
      plan = tool.kind === 'job' ? tool.job(args, seed) : imageJobPlan(tool.prompt(args), seed);
      held(await this.ledger.advance(run.id, owner, Phase.rendering, { job: plan }));
    }

    let job = await this.ledger.jobOf(run.id);
    if (job !== null) {
      this.log.info('resuming a run whose job was submitted: following it, never submitting again', {
        run_id: run.id,
        job_id: job.jobId,
      });
    } else {
      step.now = 'submitting the job';
      job = await this.obtainJob(run, owner, provider, plan, signal, held);
    }

    step.now = `waiting for job ${job.jobId}`;
    const final = await this.follow(run, owner, provider, job, signal, held);

    step.now = 'fetching the outputs';
    const { assets, poster } = await this.keepOutputs(run, owner, provider, job, final, signal, held);
    // A poster frame stands for a video only when there is one video it can belong to.
    const videos = assets.filter((a) => a.mime.startsWith('video/'));
    const posterOf = (a: AssetRef) => (poster !== null && videos.length === 1 && videos[0] === a ? poster : null);

    const evaluations = new Map<number, Evaluation | Unscored>();
    for (const asset of assets) {
      step.now = `scoring output ${asset.n + 1} of ${assets.length}`;
      const stored = run.recovery[evaluationPoint(asset.n)];
      const evaluation =
        stored ?? (await this.evaluate(run, tool, args, plan, asset, posterOf(asset), provider, signal));
      if (stored === undefined)
        held(
          await this.ledger.checkpoint(
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
    const finished = await this.ledger.finish(run.id, owner, result, { provider: provider.id, model: provider.model });
    if (finished !== null)
      this.log.info('run done', { run_id: run.id, tool: run.tool, job_id: job.jobId, score: result.evaluation.score });
  }

  // ---- the submit, and the window after it -----------------------------------------------------

  private async obtainJob(
    run: ClaimedRun<JobRecovery>,
    owner: string,
    provider: JobProvider,
    plan: JobPlan,
    signal: AbortSignal,
    held: (ok: unknown) => void,
  ): Promise<StoredJob> {
    const request = await this.resolveRequest(run, plan, signal);
    const point = run.recovery['job/submitting'];
    if (point !== undefined && point.none !== true) {
      if (provider.honoursKeys) {
        this.log.info(
          'the last submit may have made a job; sending it again with the same key, which the provider honours',
          { run_id: run.id, provider: provider.id },
        );
        return this.submit(run, owner, provider, request, signal, held);
      }
      return this.findOrphan(run, owner, provider, point, request, signal, held);
    }
    return this.submit(run, owner, provider, request, signal, held);
  }

  private async submit(
    run: ClaimedRun<JobRecovery>,
    owner: string,
    provider: JobProvider,
    request: JobRequest,
    signal: AbortSignal,
    held: (ok: unknown) => void,
  ): Promise<StoredJob> {
    const webhookUrl = this.webhookUrl(provider, run.id);
    for (let attempt = 1; ; attempt++) {
      const point: Submitting = { at: new Date().toISOString(), provider: provider.id, webhook: webhookUrl !== null };
      // Stored, and on disk, before the paid step: a run resumed after a crash now knows a job may exist.
      held(await this.ledger.checkpoint(run.id, owner, 'job/submitting', point));
      failpoint('submit', run.tool);
      let handle: JobHandle;
      try {
        // Never cut short: an answer that arrives is stored, whatever happened meanwhile.
        handle = await provider.submit(request, { runId: run.id, webhookUrl, signal: new AbortController().signal });
      } catch (err) {
        if (err instanceof NotSubmitted) {
          // Certainly no job: said so, so that whoever tries next may submit again.
          await this.ledger.checkpoint(run.id, owner, 'job/submitting', { ...point, none: true }).catch(() => false);
          throw new AttemptFailed(
            new GenerationFailedError(`${provider.id} would not take the job: ${err.message}`, {
              provider: provider.id,
            }).toJSON(),
          );
        }
        if (err instanceof SubmitOutcomeUnknown) {
          if (provider.honoursKeys && attempt < 4) {
            this.log.warn('the submit may or may not have made a job; sending it again with the same key', {
              run_id: run.id,
              provider: provider.id,
              error: err.message,
            });
            await sleep(jittered(1000 * 2 ** attempt), undefined, { signal });
            continue;
          }
          this.log.warn('the submit may or may not have made a job: looking for it rather than submitting again', {
            run_id: run.id,
            provider: provider.id,
            error: err.message,
          });
          return this.findOrphan(run, owner, provider, point, request, signal, held);
        }
        throw err;
      }
      failpoint('submitted', run.tool);
      const job = await this.adopt(run, owner, handle, held);
      if (job === null)
        throw new GenerationFailedError(
          `${provider.id} answered the submit with job ${handle.jobId}, which another run holds.`,
          { provider: provider.id, job_id: handle.jobId },
        );
      this.log.info('job submitted', {
        run_id: run.id,
        provider: provider.id,
        job_id: job.jobId,
        webhook: webhookUrl !== null,
      });
      return job;
    }
  }

  /** Stores the job as the run's; null when it is another run's. Throws when the run is no longer this worker's (after asking for a cancel if it was canceled). */
  private async adopt(
    run: ClaimedRun<JobRecovery>,
    owner: string,
    handle: JobHandle,
    held: (ok: unknown) => void,
  ): Promise<StoredJob | null> {
    const attached = await this.ledger.attachJob(run.id, owner, handle);
    if (!attached.held) {
      // Canceled while the submit was out: the job now stored is canceled upstream too.
      void this.cancelUpstream(run.id);
      held(false);
    }
    if (attached.job === null) return null;
    if (attached.job.jobId !== handle.jobId) {
      this.log.warn('the run already had a job; keeping the first', {
        run_id: run.id,
        kept: attached.job.jobId,
        other: handle.jobId,
      });
    }
    held(
      await this.ledger.checkpoint(
        run.id,
        owner,
        'job/status',
        { state: 'queued', text: 'submitted', at: new Date().toISOString() } satisfies StatusPoint,
        0.55,
      ),
    );
    return attached.job;
  }

  /**
   * The submit was sent but its answer never stored. Looks, until the bound, for a job that is surely
   * this run's: one a webhook named the run for, or one the list endpoint shows carrying the run id, or
   * the only one with the submitted input made around the submit. Never submits again.
   */
  private async findOrphan(
    run: ClaimedRun<JobRecovery>,
    owner: string,
    provider: JobProvider,
    point: Submitting,
    request: JobRequest,
    signal: AbortSignal,
    held: (ok: unknown) => void,
  ): Promise<StoredJob> {
    const submittedAt = Date.parse(point.at);
    const deadline = submittedAt + this.opts.orphanSearchMs;
    const body = provider.submitBody(request, run.id, point.webhook ? this.webhookUrl(provider, run.id) : null);
    const searchedBy = [
      ...(point.webhook ? ['webhooks naming the run'] : []),
      ...(provider.canList ? ['the list endpoint'] : []),
    ];
    this.log.warn('a submit was sent but its job was never stored: looking for the job, not submitting again', {
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
      for (const d of await this.ledger.webhookDeliveries(run.id)) {
        if (d.provider === provider.id && d.jobId !== null)
          candidates.push({ handle: { provider: provider.id, jobId: d.jobId, fields: {} }, by: 'webhook' });
      }
      if (provider.canList) {
        try {
          candidates.push(...(await provider.findOrphans({ runId: run.id, submittedBody: body, submittedAt, signal })));
        } catch (err) {
          if (!(err instanceof ProviderBusy || err instanceof JobRefused)) throw err;
          this.log.warn("could not read the provider's list of jobs; trying again", {
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
          const job = await this.adopt(run, owner, pick.handle, held);
          if (job !== null) {
            this.log.info('adopted the orphaned job: no second submit', {
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
      await this.waitForNews(run.id, Math.min(pause, left), signal, seen);
      pause = Math.min(pause * 2, 5000);
    }
  }

  /** The request with the images of earlier runs it names read in, as data: URIs. */
  private async resolveRequest(run: ClaimedRun<JobRecovery>, plan: JobPlan, signal: AbortSignal): Promise<JobRequest> {
    const request: JobRequest = { ...plan.fields };
    for (const [field, ref] of Object.entries(plan.runImages)) {
      const deadline = Date.now() + RUN_IMAGE_WAIT_MS;
      let source = await this.ledger.getRun(run.tenant, ref.run_id).catch((err: unknown) => {
        throw new GenerationFailedError(`${field}: ${asRunledgerError(err).message}`, { field, run_id: ref.run_id });
      });
      // A run named while it is still going is waited for: an agent may ask for both at once.
      while (source.phase !== Phase.done) {
        if (source.phase === Phase.failed || source.phase === Phase.canceled) {
          throw new GenerationFailedError(
            `${field}: run ${ref.run_id} ${source.phase}; it has no image to start from.`,
            { field, run_id: ref.run_id },
          );
        }
        if (Date.now() > deadline)
          throw new GenerationFailedError(
            `${field}: run ${ref.run_id} was not done within ${RUN_IMAGE_WAIT_MS / 60_000} minutes.`,
            { field, run_id: ref.run_id },
          );
        await this.waitForNews(ref.run_id, 500, signal, null);
        source = await this.ledger.getRun(run.tenant, ref.run_id);
      }
      const asset = await this.ledger.readAsset(run.tenant, ref.run_id, ref.n).catch(() => {
        throw new GenerationFailedError(`${field}: run ${ref.run_id} has no image ${ref.n}.`, {
          field,
          run_id: ref.run_id,
          n: ref.n,
        });
      });
      if (!asset.mime.startsWith('image/'))
        throw new GenerationFailedError(
          `${field}: asset ${ref.n} of run ${ref.run_id} is ${asset.mime}, not an image.`,
          { field },
        );
      if (asset.bytes.byteLength > RUN_IMAGE_MAX_BYTES)
        throw new GenerationFailedError(`${field}: the image is larger than ${RUN_IMAGE_MAX_BYTES} bytes.`, { field });
      request[field] = `data:${asset.mime};base64,${asset.bytes.toString('base64')}`;
    }
    return request;
  }

  // ---- following the job -----------------------------------------------------------------------

  /** Polls until the job ends, sooner when a webhook names the run. Returns the status of a job that succeeded. */
  private async follow(
    run: ClaimedRun<JobRecovery>,
    owner: string,
    provider: JobProvider,
    job: StoredJob,
    signal: AbortSignal,
    held: (ok: unknown) => void,
  ): Promise<JobStatus> {
    const def = provider.definition;
    const started = Date.parse(job.createdAt);
    const seen = new Set((await this.ledger.webhookDeliveries(run.id)).map((d) => d.webhookId));
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
        this.log.warn("reading the job's status failed; reading the same job again after a back-off", {
          run_id: run.id,
          job_id: job.jobId,
          failures,
          wait_ms: Math.round(wait),
          error: err.message,
        });
        await this.waitForNews(run.id, wait, signal, seen);
        continue;
      }
      if (status.text !== last) {
        last = status.text;
        const point: StatusPoint = { state: status.state, text: status.text, at: new Date().toISOString() };
        held(await this.ledger.checkpoint(run.id, owner, 'job/status', point, progressOf(status)));
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
      await this.waitForNews(run.id, jittered(interval * 2), signal, seen);
      interval = Math.min(def.poll.max_interval_ms, Math.round(interval * 1.5));
    }
  }

  /**
   * Waits `ms`, or less when a webhook for the run arrives (any replica may store it; the ledger's change
   * feed says so). `seen` holds the webhooks already acted on; null: any change of the run ends the wait.
   */
  private async waitForNews(runId: string, ms: number, signal: AbortSignal, seen: Set<string> | null): Promise<void> {
    const until = Date.now() + ms;
    for (let left = ms; left > 0; left = until - Date.now()) {
      const woke = await this.sleepOrWake(runId, left, signal);
      if (!woke || seen === null) return;
      const fresh = (await this.ledger.webhookDeliveries(runId)).filter((d) => !seen.has(d.webhookId));
      for (const d of fresh) seen.add(d.webhookId);
      if (fresh.length > 0) {
        this.log.debug('a webhook named the run: asking the provider now', {
          run_id: runId,
          statuses: fresh.map((d) => d.status),
        });
        return;
      }
    }
  }

  /** True when woken by a change of the run, false when the time ran out. */
  private sleepOrWake(runId: string, ms: number, signal: AbortSignal): Promise<boolean> {
    signal.throwIfAborted();
    return new Promise((resolve, reject) => {
      const set = this.waiters.get(runId) ?? new Set();
      this.waiters.set(runId, set);
      const done = (woke: boolean, err?: unknown) => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0) this.waiters.delete(runId);
        signal.removeEventListener('abort', abort);
        if (err === undefined) resolve(woke);
        else reject(err);
      };
      const wake = () => done(true);
      const abort = () => done(false, signal.reason);
      const timer = setTimeout(() => done(false), Math.max(0, ms));
      set.add(wake);
      signal.addEventListener('abort', abort, { once: true });
    });
  }

  // ---- outputs ---------------------------------------------------------------------------------

  /** Fetches and attaches every output not attached yet; the run's assets. */
  private async keepOutputs(
    run: ClaimedRun<JobRecovery>,
    owner: string,
    provider: JobProvider,
    job: StoredJob,
    final: JobStatus,
    signal: AbortSignal,
    held: (ok: unknown) => void,
  ): Promise<{ assets: AssetRef[]; poster: string | null }> {
    const { outputs, poster } = await this.retrying(() => provider.outputsOf(job, final, signal), signal);
    if (outputs.length === 0) {
      throw new JobRefused(
        `${provider.id} job ${job.jobId} succeeded without an output at "${provider.definition.outputs.path}".`,
        { provider: provider.id, job_id: job.jobId },
      );
    }
    const attached = new Set(run.assets.map((a) => a.n));
    for (const [n, url] of outputs.entries()) {
      if (attached.has(n)) continue;
      const { bytes, mime } = await this.download(url, n, provider, signal);
      const facts = mediaFacts(bytes, mime);
      const meta = {
        width: facts.width,
        height: facts.height,
        ...(facts.durationSeconds === null ? {} : { duration_seconds: facts.durationSeconds }),
        job_id: job.jobId,
      };
      held(await this.ledger.attachAsset(run.id, owner, n, { bytes, mime, meta }, 0.9));
    }
    return { assets: await this.ledger.listAssets(run.tenant, run.id), poster };
  }

  private async download(
    url: string,
    n: number,
    provider: JobProvider,
    signal: AbortSignal,
  ): Promise<{ bytes: Buffer; mime: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        // A video of a few hundred MB may take minutes: a download gets at least five of them.
        return await fetchOutput(
          url,
          n,
          this.opts.maxOutputBytes,
          Math.max(provider.definition.timeout_ms, DOWNLOAD_TIMEOUT_MS),
          signal,
        );
      } catch (err) {
        if (!(err instanceof OutputFailed) || !err.retryable || attempt >= FETCH_ATTEMPTS) throw err;
        await sleep(jittered(1000 * 2 ** attempt), undefined, { signal });
      }
    }
  }

  /** A read the provider may answer busy: tried again with a growing back-off, a few times. */
  private async retrying<T>(read: () => Promise<T>, signal: AbortSignal): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await read();
      } catch (err) {
        if (!(err instanceof ProviderBusy) || attempt >= 6) throw err;
        await sleep(Math.max(err.waitMs ?? 0, jittered(500 * 2 ** attempt)), undefined, { signal });
      }
    }
  }

  /**
   * An image is scored; a video by its poster frame when the provider gives one (said so in the
   * evaluation), else not at all, saying why.
   */
  private async evaluate(
    run: ClaimedRun<JobRecovery>,
    tool: GenerationTool,
    args: ReturnType<GenerationTool['input']['parse']>,
    plan: JobPlan,
    asset: AssetRef,
    poster: string | null,
    provider: JobProvider,
    signal: AbortSignal,
  ): Promise<Evaluation | Unscored> {
    const score = (bytes: Uint8Array, mime: string) =>
      this.opts.threads.run({
        kind: 'score',
        input: { bytes, mime, brand: tool.brandKit(args), target: plan.target, scene: null },
      });
    if (SCORABLE.has(asset.mime)) {
      const { bytes, mime } = await this.ledger.readAsset(run.tenant, run.id, asset.n);
      return score(bytes, mime);
    }
    if (!asset.mime.startsWith('video/'))
      return { unscored: `the brand rubric reads PNG and JPEG; this output is ${asset.mime}` };
    if (poster === null)
      return {
        unscored: `the brand rubric scores still images; this output is a video (${asset.mime}), and the provider gave no poster frame to score`,
      };
    try {
      const frame = await this.download(poster, asset.n, provider, signal);
      if (!SCORABLE.has(frame.mime))
        return {
          unscored: `the brand rubric scores still images; the video's poster frame is ${frame.mime}, which it does not read`,
        };
      return { ...(await score(frame.bytes, frame.mime)), scored: 'poster frame' } as Evaluation;
    } catch (err) {
      if (!(err instanceof OutputFailed)) throw err;
      return {
        unscored: `the brand rubric scores still images; the video's poster frame could not be fetched (${err.problem})`,
      };
    }
  }

  // ---- cancels ---------------------------------------------------------------------------------

  /** Sends the provider the cancel of a canceled run's job, when this process is the one (of all replicas) to claim it. */
  async cancelUpstream(runId: string): Promise<void> {
    let job: StoredJob | null;
    try {
      job = await this.ledger.claimJobCancel(runId);
    } catch (err) {
      this.log.warn("could not claim a job's cancel", { run_id: runId, error: asRunledgerError(err).message });
      return;
    }
    if (job === null) return;
    const provider = this.opts.providers.named(job.provider);
    if (provider?.kind !== 'job' || !provider.canCancel) {
      this.log.warn(
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
        this.log.info(
          outcome === 'canceled' ? 'canceled the job upstream' : 'the job had ended upstream before its cancel',
          { run_id: runId, provider: provider.id, job_id: job.jobId },
        );
        return;
      } catch (err) {
        if (!(err instanceof ProviderBusy) || attempt >= CANCEL_ATTEMPTS) {
          this.log.warn('could not cancel the job upstream', {
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
  async sweepCancels(): Promise<void> {
    const jobs = await this.ledger.jobsAwaitingCancel();
    await Promise.all(jobs.map((job) => this.cancelUpstream(job.runId)));
  }
}

/** An attempt that failed for the run's own reason but perhaps not for good: tried again after a back-off, failed at the bound. */
export class AttemptFailed extends Error {
  constructor(readonly failure: RunError) {
    super(failure.message);
    this.name = 'AttemptFailed';
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
