// Runs carried out by an image provider (the built-in renderer, or a prompt-based one), step by
// step, each step a recovery point:
//   composing   the scenes (built-in renderer) or the prompt (prompt-based provider), stored on leaving
//   rendering   per image n: "upstream/n" (a paid call is about to be made), the image attached,
//               then "evaluation/n" (its score against the brand rubric)
//   done        the result and the run's one charge, in one transaction
import type { PromptPlan } from '../compose/prompt.js';
import type { Scene, SizeTarget } from '../compose/scene.js';
import { failpoint } from '../failpoints.js';
import { Phase, type ClaimedRun, type WorkerPort } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { GeneratedImage, ImageRequest, Provider } from '../providers/index.js';
import type { Evaluation } from '../rubric/index.js';
import { seedOf, type RunResult } from '../run-result.js';
import type { ImageTool } from '../tool.js';
import type { ThreadPool } from './threads.js';

/** What the composing step stored: the scenes to render, or the prompt to send. */
type Composed = { scenes: Scene[] } | { prompt: PromptPlan };

/** A paid call about to be made, so a resumed run sends the same key again instead of a new call. */
interface UpstreamCall {
  idempotency_key: string;
  provider: string;
  requested_at: string;
  resent: boolean;
}

/** The recovery points an image run stores, by name. */
type ImageRecovery = {
  [Phase.composing]: Composed;
  [image: `upstream/${number}`]: UpstreamCall;
  [image: `evaluation/${number}`]: Evaluation;
};

/** Progress after `done` of `total` images are stored and scored: rendering spans 0.5 → 0.95. */
function renderProgress(done: number, total: number): number {
  return 0.5 + (0.45 * done) / Math.max(total, 1);
}

/** Recovery points of image n: its paid call was made (about to be), and its evaluation. */
const upstreamPoint = (n: number) => `upstream/${n}` as const;
const evaluationPoint = (n: number) => `evaluation/${n}` as const;

/** A claimed run, as an image run reads its recovery points. */
export type ImageRun = ClaimedRun<ImageRecovery>;

export class ImageRunner {
  constructor(
    private readonly ledger: WorkerPort,
    private readonly threads: ThreadPool,
    private readonly log: Logger,
  ) {}

  /**
   * Runs the remaining steps of `run`, resuming after the last stored recovery point; `held` throws when
   * the run is no longer this worker's.
   */
  async execute(
    run: ImageRun,
    owner: string,
    tool: ImageTool,
    provider: Provider,
    signal: AbortSignal,
    held: (ok: unknown) => void,
    step: { now: string },
    delay: () => Promise<void>,
  ): Promise<void> {
    const args = tool.input.parse(run.args);

    if (run.phase === Phase.queued) held(await this.ledger.advance(run.id, owner, Phase.composing));
    let composed = run.recovery[Phase.composing] ?? null;
    if (composed === null || run.phase === Phase.queued || run.phase === Phase.composing) {
      step.now = 'composing it';
      failpoint('compose', run.tool);
      await delay();
      composed =
        provider.accepts === 'scene' ? { scenes: tool.compose(args, seedOf(run)) } : { prompt: tool.prompt(args) };
      failpoint('composed', run.tool);
      held(await this.ledger.advance(run.id, owner, Phase.rendering, composed));
    }

    const planned: { request: ImageRequest; target: SizeTarget; scene: Scene | null }[] =
      'scenes' in composed
        ? composed.scenes.map((scene) => ({ request: { kind: 'scene', scene }, target: scene.target, scene }))
        : Array.from({ length: composed.prompt.count }, () => {
            const { prompt, target } = composed.prompt;
            return {
              request: { kind: 'prompt', prompt, width: target.width, height: target.height },
              target,
              scene: null,
            };
          });
    const attached = new Map(run.assets.map((a) => [a.n, a]));
    const evaluations = new Map<number, Evaluation>();
    for (const [n, image] of planned.entries()) {
      const stored = run.recovery[evaluationPoint(n)];
      if (stored !== undefined && attached.has(n)) {
        evaluations.set(n, stored);
        continue;
      }
      let generated: Pick<GeneratedImage, 'bytes' | 'mime' | 'pixels'>;
      if (attached.has(n)) {
        // Stored before a crash, not yet scored: score those bytes; never ask the provider again.
        const asset = await this.ledger.readAsset(run.tenant, run.id, n);
        generated = { bytes: asset.bytes, mime: asset.mime };
      } else {
        await delay();
        step.now = `rendering image ${n + 1} of ${planned.length}`;
        const made = await this.generate(run, owner, provider, n, image.request, signal, held);
        const meta = {
          width: made.width,
          height: made.height,
          ...(made.requestId === undefined ? {} : { request_id: made.requestId }),
        };
        held(
          await this.ledger.attachAsset(
            run.id,
            owner,
            n,
            { bytes: made.bytes, mime: made.mime, meta },
            renderProgress(n + 1, planned.length),
          ),
        );
        generated = made;
      }
      step.now = `scoring image ${n + 1} of ${planned.length}`;
      const evaluation = await this.threads.run({
        kind: 'score',
        input: {
          bytes: generated.bytes,
          mime: generated.mime,
          pixels: generated.pixels,
          brand: tool.brandKit(args),
          target: image.target,
          scene: image.scene,
        },
      });
      held(await this.ledger.checkpoint(run.id, owner, evaluationPoint(n), evaluation));
      evaluations.set(n, evaluation);
    }

    failpoint('finish', run.tool);
    const assets = await this.ledger.listAssets(run.tenant, run.id);
    const variants = assets.map((a) => ({ n: a.n, ...evaluations.get(a.n)! }));
    const result: RunResult = {
      seed: seedOf(run),
      generator: { provider: provider.id, version: provider.version, model: provider.model },
      assets: assets.map((a) => ({
        n: a.n,
        sha256: a.sha256,
        mime: a.mime,
        size: a.size,
        width: a.meta.width as number,
        height: a.meta.height as number,
      })),
      evaluation: {
        score: variants.reduce((sum, e) => sum + e.score, 0) / Math.max(variants.length, 1),
        passed: variants.reduce((sum, e) => sum + e.passed, 0),
        tested: variants.reduce((sum, e) => sum + e.tested, 0),
        variants,
      },
    };
    const finished = await this.ledger.finish(run.id, owner, result, { provider: provider.id, model: provider.model });
    if (finished !== null)
      this.log.info('run done', { run_id: run.id, tool: run.tool, score: result.evaluation.score });
  }

  /**
   * Image n from the provider. A paid call is recorded before it is made: a run resumed after a crash
   * then sends the same key again (a provider that honours keys answers it without a second charge)
   * instead of making a new call.
   */
  private async generate(
    run: ImageRun,
    owner: string,
    provider: Provider,
    n: number,
    request: ImageRequest,
    signal: AbortSignal,
    held: (ok: boolean) => void,
  ): Promise<GeneratedImage> {
    const idempotencyKey = `${run.id}/${n}`;
    if (provider.billsPerCall) {
      const before = run.recovery[upstreamPoint(n)];
      if (before !== undefined)
        this.log.info('re-sending an image request whose answer was lost', { run_id: run.id, key: idempotencyKey });
      const requested: UpstreamCall = {
        idempotency_key: idempotencyKey,
        provider: provider.id,
        requested_at: new Date().toISOString(),
        resent: before !== undefined,
      };
      held(await this.ledger.checkpoint(run.id, owner, upstreamPoint(n), requested));
    }
    failpoint('generate', run.tool);
    const image = await provider.generate(request, { idempotencyKey, signal });
    failpoint('generated', run.tool);
    return image;
  }
}
