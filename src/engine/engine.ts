// In-process workers: claim runs with leases, move them through their phases, store a recovery point
// after each, and bill on done. A run whose worker died is resumed by any engine sharing the ledger.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { nanoid } from 'nanoid';
import { asRunledgerError, GenerationFailedError, StorageUnavailableError } from '../errors.js';
import { MAX_STALLS, Phase, type ClaimedRun, type JsonObject, type RunLedger } from '../ledger/index.js';
import { silentLogger, type Logger } from '../log.js';
import { createBuiltinProvider, type Provider } from '../providers/index.js';
import type { Scene } from '../providers/scene.js';
import type { Evaluation } from '../rubric/index.js';
import { seedOf, type RunResult } from '../run-result.js';
import type { GenerationTool } from '../tool.js';

export interface EngineOptions {
  ledger: RunLedger;
  tools: readonly GenerationTool[];
  /** Default: the built-in renderer, on one worker thread per concurrent run. */
  provider?: Provider;
  concurrency?: number;
  /** Slows every phase step, so the phase stream can be watched and crash tests can land inside one. */
  phaseDelayMs?: number;
  /** How often an idle worker looks for runs queued by other processes or left by dead workers. */
  idlePollMs?: number;
  log?: Logger;
}

/** Progress after `done` of `total` variants are rendered: rendering spans 0.5 → 0.95. */
function renderProgress(done: number, total: number): number {
  return 0.5 + (0.45 * done) / Math.max(total, 1);
}

/** The recovery point holding variant n's evaluation, written before its image is attached. */
const evaluationPoint = (n: number) => `evaluation/${n}`;

const SWEEP_EVERY_MS = 3600_000;

/** Where a run stood when its workers kept stopping: what an operator reads in its error. */
function stalledStep(run: ClaimedRun): string {
  if (run.phase === Phase.rendering) return `rendering image ${run.assets.length + 1} (phase rendering, ${run.assets.length} image(s) stored)`;
  return run.phase === Phase.queued ? 'starting it (phase queued)' : 'composing its scenes (phase composing)';
}

export class Engine {
  readonly owner = `${hostname()}:${process.pid}:${nanoid(6)}`;
  private readonly ledger: RunLedger;
  private readonly tools: Map<string, GenerationTool>;
  private readonly provider: Provider;
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

  constructor(opts: EngineOptions) {
    this.ledger = opts.ledger;
    this.tools = new Map(opts.tools.map((t) => [t.name, t]));
    this.concurrency = opts.concurrency ?? 2;
    this.provider = opts.provider ?? createBuiltinProvider(this.concurrency);
    this.phaseDelayMs = opts.phaseDelayMs ?? 0;
    this.idlePollMs = opts.idlePollMs ?? 500;
    this.log = opts.log ?? silentLogger;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    // A run queued here (or, on a shared server database, anywhere) wakes an idle worker at once.
    this.unsubscribe = this.ledger.subscribe((change) => {
      if (change.phase === Phase.queued) this.wake();
    });
    this.loops = Array.from({ length: this.concurrency }, (_, i) => this.work(`${this.owner}/${i}`));
    void this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
    this.sweepTimer.unref();
  }

  /** Stop claiming, interrupt runs in progress and give their leases back so another worker resumes them. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    clearInterval(this.sweepTimer);
    for (const controller of this.active.values()) controller.abort();
    this.wake();
    await Promise.all(this.loops);
    await this.provider.close();
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
      let run: ClaimedRun | null = null;
      try {
        run = await this.ledger.claim(owner);
      } catch (err) {
        this.log.warn('could not claim a run', { error: asRunledgerError(err).message });
      }
      // After nothing to do, or a storage failure, wait before trying again rather than spin.
      if (run === null || !(await this.process(run, owner))) await this.idle();
    }
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
  private async process(run: ClaimedRun, owner: string): Promise<boolean> {
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
    if (run.attempts > 1) this.log.info('resuming run', { run_id: run.id, phase: run.phase, attempt: run.attempts });
    try {
      await this.execute(run, owner, controller.signal);
    } catch (err) {
      if (err instanceof LeaseLost) {
        this.log.debug('run left by this worker', { run_id: run.id });
      } else if (controller.signal.aborted) {
        // Shut down or lost the lease: whoever holds the run now carries on from its recovery point.
        if (!this.running) await this.ledger.release(run.id, owner).catch(() => undefined);
      } else if (err instanceof StorageUnavailableError) {
        this.log.warn('storage unavailable mid-run; leaving it for a retry', { run_id: run.id, error: err.message });
        await this.ledger.release(run.id, owner).catch(() => undefined);
        return false;
      } else {
        const failure = err instanceof GenerationFailedError ? err : new GenerationFailedError(asRunledgerError(err).message, {}, err);
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

  /** Runs the remaining phases of `run`, resuming after the last stored recovery point. */
  private async execute(run: ClaimedRun, owner: string, signal: AbortSignal): Promise<void> {
    // Workers die for reasons of their own (deploys, OOM kills, a closed laptop); a run is failed only
    // when attempt after attempt stopped without getting any further: then the run is the cause.
    if (run.stalls >= MAX_STALLS) {
      throw new GenerationFailedError(
        `Gave up after ${MAX_STALLS} attempts that made no progress: each worker stopped while ${stalledStep(run)}.`,
        { attempts: run.attempts - 1, stalls: run.stalls, phase: run.phase },
      );
    }
    const tool = this.tools.get(run.tool);
    if (tool === undefined) throw new GenerationFailedError(`This server has no tool named ${run.tool}.`, { tool: run.tool });
    const args = tool.input.parse(run.args);
    const seed = seedOf(run);
    // False or null from the ledger means the run is no longer ours (canceled, deleted or taken over): stop quietly.
    const held = (ok: unknown) => {
      if (ok === null || ok === false) throw new LeaseLost();
    };

    if (run.phase === Phase.queued) held(await this.ledger.advance(run.id, owner, Phase.composing));
    let scenes = (run.recovery[Phase.composing]?.scenes as Scene[] | undefined) ?? null;
    if (scenes === null || run.phase === Phase.queued || run.phase === Phase.composing) {
      await this.delay(signal);
      scenes = tool.compose(args, seed);
      held(await this.ledger.advance(run.id, owner, Phase.rendering, { scenes: scenes as unknown as JsonObject[] }));
    }

    const evaluations = new Map<number, Evaluation>();
    for (const asset of run.assets) {
      const stored = run.recovery[evaluationPoint(asset.n)] as unknown as Evaluation | undefined;
      if (stored !== undefined) evaluations.set(asset.n, stored);
    }
    const brand = tool.brandKit(args);
    for (const [n, scene] of scenes.entries()) {
      if (evaluations.has(n)) continue;
      await this.delay(signal);
      const image = await this.provider.render(scene, brand, { idempotencyKey: `${run.id}/${n}` });
      // The evaluation is stored before the image: an attached image always has its evaluation.
      held(await this.ledger.checkpoint(run.id, owner, evaluationPoint(n), image.evaluation as unknown as JsonObject));
      const asset = { bytes: image.png, mime: 'image/png', meta: { width: image.width, height: image.height } };
      held(await this.ledger.attachAsset(run.id, owner, n, asset, renderProgress(n + 1, scenes.length)));
      evaluations.set(n, image.evaluation);
    }

    const assets = await this.ledger.listAssets(run.tenant, run.id);
    const variants = assets.map((a) => ({ n: a.n, ...evaluations.get(a.n)! }));
    const result: RunResult = {
      seed,
      generator: { provider: this.provider.id, version: this.provider.version },
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
    const charge = { provider: this.provider.id, model: null };
    const finished = await this.ledger.finish(run.id, owner, result as unknown as JsonObject, charge);
    if (finished !== null) this.log.info('run done', { run_id: run.id, tool: run.tool, score: result.evaluation.score });
  }

  private async delay(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.phaseDelayMs > 0) await sleep(this.phaseDelayMs, undefined, { signal });
  }
}

/** The run is no longer this worker's (canceled, deleted or taken over): nothing more may be written. */
class LeaseLost extends Error {
  constructor() {
    super('this worker no longer holds the run');
    this.name = 'LeaseLost';
  }
}
