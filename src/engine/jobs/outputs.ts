// A succeeded job's outputs: fetched and attached at once (the provider's URLs expire), then scored
// against the brand rubric where it can read them, and said why not where it cannot.
import { setTimeout as sleep } from 'node:timers/promises';
import type { AssetRef, StoredJob } from '../../ledger/index.js';
import { JobRefused, ProviderBusy, type JobProvider, type JobStatus } from '../../providers/jobs.js';
import { fetchOutput, mediaFacts, OutputFailed } from '../../providers/media.js';
import type { Evaluation } from '../../rubric/index.js';
import type { GenerationTool, JobPlan } from '../../tool.js';
import { jittered, type JobContext, type JobRun, type Unscored } from './context.js';

/** Scores what the rubric reads (PNG, JPEG); for anything else, says why not. */
const SCORABLE = new Set(['image/png', 'image/jpeg']);

/** Tries of one output download the host answered 5xx, or did not answer. */
const FETCH_ATTEMPTS = 4;
/** The least time one output download is given. */
const DOWNLOAD_TIMEOUT_MS = 5 * 60_000;

/** Fetches and attaches every output not attached yet; the run's assets. */
export async function keepOutputs(
  ctx: JobContext,
  run: JobRun,
  owner: string,
  provider: JobProvider,
  job: StoredJob,
  final: JobStatus,
  signal: AbortSignal,
  held: (ok: unknown) => void,
): Promise<{ assets: AssetRef[]; poster: string | null }> {
  const { outputs, poster } = await retrying(() => provider.outputsOf(job, final, signal), signal);
  if (outputs.length === 0) {
    throw new JobRefused(
      `${provider.id} job ${job.jobId} succeeded without an output at "${provider.definition.outputs.path}".`,
      { provider: provider.id, job_id: job.jobId },
    );
  }
  const attached = new Set(run.assets.map((a) => a.n));
  for (const [n, url] of outputs.entries()) {
    if (attached.has(n)) continue;
    const { bytes, mime } = await download(ctx, url, n, provider, signal);
    const facts = mediaFacts(bytes, mime);
    const meta = {
      width: facts.width,
      height: facts.height,
      ...(facts.durationSeconds === null ? {} : { duration_seconds: facts.durationSeconds }),
      job_id: job.jobId,
    };
    held(await ctx.ledger.attachAsset(run.id, owner, n, { bytes, mime, meta }, 0.9));
  }
  return { assets: await ctx.ledger.listAssets(run.tenant, run.id), poster };
}

async function download(
  ctx: JobContext,
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
        ctx.opts.maxOutputBytes,
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
async function retrying<T>(read: () => Promise<T>, signal: AbortSignal): Promise<T> {
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
export async function evaluate(
  ctx: JobContext,
  run: JobRun,
  tool: GenerationTool,
  args: ReturnType<GenerationTool['input']['parse']>,
  plan: JobPlan,
  asset: AssetRef,
  poster: string | null,
  provider: JobProvider,
  signal: AbortSignal,
): Promise<Evaluation | Unscored> {
  const score = (bytes: Uint8Array, mime: string) =>
    ctx.opts.threads.run({
      kind: 'score',
      input: { bytes, mime, brand: tool.brandKit(args), target: plan.target, scene: null },
    });
  if (SCORABLE.has(asset.mime)) {
    const { bytes, mime } = await ctx.ledger.readAsset(run.tenant, run.id, asset.n);
    return score(bytes, mime);
  }
  if (!asset.mime.startsWith('video/'))
    return { unscored: `the brand rubric reads PNG and JPEG; this output is ${asset.mime}` };
  if (poster === null)
    return {
      unscored: `the brand rubric scores still images; this output is a video (${asset.mime}), and the provider gave no poster frame to score`,
    };
  try {
    const frame = await download(ctx, poster, asset.n, provider, signal);
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
