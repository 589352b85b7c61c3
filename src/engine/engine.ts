// In-process workers: claim runs with leases, move them through their phases, store a recovery point
// after each step, and bill on done. A run whose worker died is resumed by any engine sharing the
// ledger, from its last recovery point.
//
// One run, step by step, each step a recovery point:
//   composing   the scenes (built-in renderer) or the prompt (prompt-based provider), stored on leaving
//   rendering   per image n: "upstream/n" (a paid call is about to be made), the image attached,
//               then "evaluation/n" (its score against the brand rubric)
//   done        the result and the run's one charge, in one transaction
import { setTimeout as sleep } from 'node:timers/promises';
import type { PromptPlan } from '../compose/prompt.js';
import type { Scene, SizeTarget } from '../compose/scene.js';
import { asRunledgerError, GenerationFailedError, JobOutcomeUnknownError, StorageUnavailableError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import {
  Phase,
  processOwner,
  type CallerPort,
  type ChangeSource,
  type ClaimedRun,
  type Housekeeping,
  type WorkerPort,
} from '../ledger/index.js';
import { silentLogger, type Logger } from '../log.js';
import { createBuiltinProvider } from '../providers/builtin.js';
import {
  providerSet,
  type GeneratedImage,
  type ImageRequest,
  type Provider,
  type ProviderSet,
} from '../providers/index.js';
import type { Evaluation } from '../rubric/index.js';
import { seedOf, type RunResult } from '../run-result.js';
import type { GenerationTool } from '../tool.js';
import { AttemptFailed, JobRunner, type JobRun } from './jobs.js';
import { createThreadPool, ThreadDied, type ThreadPool } from './threads.js';
import { DEFAULT_CONCURRENCY, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_ORPHAN_SEARCH_MS } from './defaults.js';

/**
 * What the engine needs of the ledger: a worker's verbs, the change feed, and housekeeping (and, for a
 * job that starts from an earlier run's image, reading that run).
 */
export type EngineLedger = WorkerPort & ChangeSource & Housekeeping & Pick<CallerPort, 'getRun'>;

export interface EngineOptions {
  ledger: EngineLedger;
  tools: readonly GenerationTool[];
  /** Scores images (and renders the built-in ones) off the main thread. Default: a pool of its own. */
  threads?: ThreadPool;
  /** Default: the built-in renderer for every tool, on `threads`. */
  providers?: ProviderSet;
  concurrency?: number;
  /** Slows every phase step, so the phase stream can be watched and crash tests can land inside one. */
  phaseDelayMs?: number;
  /** How often an idle worker looks for runs queued by other processes or left by dead workers. */
  idlePollMs?: number;
  log?: Logger;
  /** For job providers (queue APIs): where webhooks are sent, how long a lost job is looked for, the largest output kept. */
  jobs?: { publicUrl: string | null; orphanSearchMs: number; maxOutputBytes: number };
}

/** How often canceled runs' jobs that nobody has canceled upstream are looked for. */
const CANCEL_SWEEP_MS = 5000;

/** What the composing step stored: the scenes to render, or the prompt to send. */
type Composed = { scenes: Scene[] } | { prompt: PromptPlan };

/** A paid call about to be made, so a resumed run sends the same key again instead of a new call. */
interface UpstreamCall {
  idempotency_key: string;
  provider: string;
  requested_at: string;
  resent: boolean;
}

/** The recovery points the engine stores, by name. */
type EngineRecovery = {
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

const SWEEP_EVERY_MS = 3600_000;

/** The run is no longer this worker's (canceled, deleted or taken over): nothing more may be written. */
class LeaseLost extends Error {
  constructor() {
    super('this worker no longer holds the run');
    this.name = 'LeaseLost';
  }
}

export class Engine {
  /** Names this process, so that its leases are taken over at once should it die (see ledger/holders.ts). */
  readonly owner = processOwner('engine');
  private readonly ledger: EngineLedger;
  private readonly tools: Map<string, GenerationTool>;
  /** Run tool names this engine can do: of the engine's runs, it claims only these. */
  private readonly runTools: string[];
  private readonly providers: ProviderSet;
  private readonly threads: ThreadPool;
  private readonly concurrency: number;
  private readonly phaseDelayMs: number;
  private readonly idlePollMs: number;
  private readonly log: Logger;
  private readonly active = new Map<string, AbortController>();
  private waiters: (() => void)[] = [];
  private loops: Promise<void>[] = [];
  private running = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  /** When this engine last looked for runs held by processes that have died, and that look if under way. */
  private deadHoldersCheck: { at: number; done: Promise<void> } = { at: 0, done: Promise.resolve() };
  /** What this engine made itself (rather than was given), so closes when it stops. */
  private readonly owned: { close(): Promise<void> }[] = [];
  /** Carries out the runs of job providers; null when this engine has none. */
  private readonly jobs: JobRunner | null;
  private cancelSweep: NodeJS.Timeout | undefined;

  constructor(opts: EngineOptions) {
    this.ledger = opts.ledger;
    this.tools = new Map(opts.tools.map((t) => [t.name, t]));
    this.runTools = [...this.tools.keys()];
    this.concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    const threads = opts.threads ?? createThreadPool(this.concurrency);
    if (opts.threads === undefined) this.owned.push(threads);
    this.threads = threads;
    this.providers =
      opts.providers ??
      providerSet(
        new Map([['builtin', createBuiltinProvider((scene) => threads.run({ kind: 'render', scene }))]]),
        'builtin',
        new Map(),
      );
    this.phaseDelayMs = opts.phaseDelayMs ?? 0;
    this.idlePollMs = opts.idlePollMs ?? 500;
    this.log = opts.log ?? silentLogger;
    const jobs = opts.jobs ?? {
      publicUrl: null,
      orphanSearchMs: DEFAULT_ORPHAN_SEARCH_MS,
      maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
    };
    this.jobs =
      this.providers.jobProviders().length === 0
        ? null
        : new JobRunner({ ledger: this.ledger, providers: this.providers, threads, log: this.log, ...jobs });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.unsubscribe = this.ledger.subscribe((change) => {
      // A run queued here (or, on a shared server database, anywhere) wakes an idle worker at once;
      // a run canceled while its provider call is in flight has that call aborted now.
      if (change.phase === Phase.queued) this.wake();
      if (change.phase === Phase.canceled) {
        this.active.get(change.runId)?.abort();
        // The provider's cancel is sent once, by whichever replica claims it first.
        void this.jobs?.cancelUpstream(change.runId);
      }
      // A webhook stored for a run this engine follows (on any replica) wakes its follower.
      this.jobs?.heard(change.runId);
    });
    if (this.jobs !== null) {
      const jobs = this.jobs;
      this.cancelSweep = setInterval(() => void jobs.sweepCancels().catch(() => undefined), CANCEL_SWEEP_MS);
      this.cancelSweep.unref();
    }
    this.loops = Array.from({ length: this.concurrency }, (_, i) => this.work(`${this.owner}/${i}`));
    void this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
    this.sweepTimer.unref();
  }

  /** Stop claiming, interrupt runs in progress and give their leases back so another worker resumes them. */
  async stop(): Promise<void> {
    if (this.running) {
      this.running = false;
      this.unsubscribe?.();
      clearInterval(this.sweepTimer);
      clearInterval(this.cancelSweep);
      for (const controller of this.active.values()) controller.abort();
      this.wake();
      await Promise.all(this.loops);
    }
    await Promise.all(this.owned.splice(0).map((o) => o.close()));
  }

  private wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wakeUp);
        resolve();
      }, this.idlePollMs);
      const wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(wakeUp);
    });
  }

  private async work(owner: string): Promise<void> {
    while (this.running) {
      let run: ClaimedRun<EngineRecovery> | null = null;
      try {
        await this.freeDeadHolders();
        run = await this.ledger.claim<EngineRecovery>(owner, { tools: this.runTools });
      } catch (err) {
        this.log.warn('could not claim a run', { error: asRunledgerError(err).message });
      }
      // After nothing to do, or a storage failure, wait before trying again rather than spin.
      if (run === null || !(await this.process(run, owner))) await this.idle();
    }
  }

  /**
   * Frees runs whose holder on this host has died, at most once an idle poll however many loops ask:
   * a killed server's runs resume now rather than when its leases run out.
   */
  private freeDeadHolders(): Promise<void> {
    const now = Date.now();
    if (now - this.deadHoldersCheck.at >= this.idlePollMs) {
      const done = this.ledger.releaseDeadHolders().then(
        (freed) => freed.length > 0 && this.log.info('took over runs whose holder died', { run_ids: freed }),
        (err: unknown) => this.log.warn('could not look for dead holders', { error: asRunledgerError(err).message }),
      );
      this.deadHoldersCheck = { at: now, done: done.then(() => undefined) };
    }
    return this.deadHoldersCheck.done;
  }

  private async sweep(): Promise<void> {
    try {
      const report = await this.ledger.sweep();
      if (report.runsForgotten > 0) this.log.info('retention sweep', { ...report });
    } catch (err) {
      this.log.warn('retention sweep failed', { error: asRunledgerError(err).message });
    }
  }

  /** Works on one claimed run; false when storage failed and the worker should back off. */
  private async process(run: ClaimedRun<EngineRecovery>, owner: string): Promise<boolean> {
    const controller = new AbortController();
    this.active.set(run.id, controller);
    const heartbeat = setInterval(
      () => {
        this.ledger.renew(run.id, owner).then(
          (held) => held || controller.abort(),
          () => undefined, // a busy store: the next beat tries again before the lease runs out
        );
      },
      Math.max(50, Math.floor(this.ledger.leaseMs / 3)),
    );
    if (run.attempts > 1)
      this.log.info('resuming run', { run_id: run.id, phase: run.phase, attempt: run.attempts, stalls: run.stalls });
    // Where the attempt is, for an operator reading why it failed.
    const step = { now: 'starting it' };
    try {
      await this.execute(run, owner, controller.signal, step);
    } catch (err) {
      if (err instanceof LeaseLost) {
        this.log.debug('run left by this worker', { run_id: run.id });
      } else if (controller.signal.aborted) {
        // Shut down, canceled, or the lease was lost: whoever holds the run now carries on from its
        // recovery point; a canceled run is over.
        if (!this.running) await this.ledger.release(run.id, owner).catch(() => undefined);
      } else if (err instanceof StorageUnavailableError) {
        this.log.warn('storage unavailable mid-run; leaving it for a retry', { run_id: run.id, error: err.message });
        await this.ledger.release(run.id, owner).catch(() => undefined);
        return false;
      } else if (err instanceof AttemptFailed) {
        // The provider would not take the job now (throttled at the door): tried again after a back-off.
        const after = await this.ledger.abandon(run.id, owner, err.failure).catch(() => null);
        this.log.warn(
          after?.phase === Phase.failed
            ? 'run failed: its provider kept refusing it'
            : 'provider refused the job for now; it is tried again after a back-off',
          {
            run_id: run.id,
            error: err.message,
          },
        );
      } else if (err instanceof ThreadDied) {
        // The run's own failure (its scene killed the sandbox, or ran past its time), but maybe not for
        // good: it is tried again after a back-off, and failed at the bound, unbilled.
        const failure = new GenerationFailedError(`${err.message} while ${step.now}`, {
          exit_code: err.exitCode,
          attempt: run.attempts,
        });
        const after = await this.ledger.abandon(run.id, owner, failure.toJSON()).catch(() => null);
        this.log.warn(
          after?.phase === Phase.failed
            ? 'run failed: its sandbox kept failing on it'
            : 'sandbox failed on a run; it is tried again after a back-off',
          {
            run_id: run.id,
            error: failure.message,
          },
        );
      } else {
        const failure =
          err instanceof GenerationFailedError || err instanceof JobOutcomeUnknownError
            ? err
            : new GenerationFailedError(asRunledgerError(err).message, {}, err);
        this.log.warn('run failed', { run_id: run.id, error: failure.message });
        await this.ledger.fail(run.id, owner, failure.toJSON()).catch((e: unknown) => {
          this.log.error('could not record a failed run', { run_id: run.id, error: asRunledgerError(e).message });
        });
      }
    } finally {
      clearInterval(heartbeat);
      this.active.delete(run.id);
    }
    return true;
  }

  /** Runs the remaining steps of `run`, resuming after the last stored recovery point. */
  private async execute(
    run: ClaimedRun<EngineRecovery>,
    owner: string,
    signal: AbortSignal,
    step: { now: string },
  ): Promise<void> {
    const tool = this.tools.get(run.tool);
    if (tool === undefined)
      throw new GenerationFailedError(`This server has no tool named ${run.tool}.`, { tool: run.tool });
    const provider = this.providers.forTool(tool.name);
    // False or null from the ledger: the run is no longer ours. Stop quietly.
    const held = (ok: unknown) => {
      if (ok === null || ok === false) throw new LeaseLost();
      failpoint('progress', run.tool);
    };
    if (provider.kind === 'job') {
      return this.jobs!.execute(run as unknown as JobRun, owner, tool, provider, signal, held, step, () =>
        this.delay(signal),
      );
    }
    if (tool.kind === 'job')
      throw new GenerationFailedError(
        `${tool.name} needs a job provider, and this server has none configured for it.`,
        { tool: tool.name },
      );
    const args = tool.input.parse(run.args);

    if (run.phase === Phase.queued) held(await this.ledger.advance(run.id, owner, Phase.composing));
    let composed = run.recovery[Phase.composing] ?? null;
    if (composed === null || run.phase === Phase.queued || run.phase === Phase.composing) {
      step.now = 'composing it';
      failpoint('compose', run.tool);
      await this.delay(signal);
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
        await this.delay(signal);
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
    run: ClaimedRun<EngineRecovery>,
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

  private async delay(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.phaseDelayMs > 0) await sleep(this.phaseDelayMs, undefined, { signal });
  }
}
