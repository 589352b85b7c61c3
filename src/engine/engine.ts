// In-process workers: claim runs with leases, move them through their phases, store a recovery point
// after each, and bill on done. A run whose worker died is resumed by any engine sharing the ledger.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { nanoid } from 'nanoid';
import { asRunledgerError, GenerationFailedError, StorageUnavailableError } from '../errors.js';
import { isTerminal, Phase, type ClaimedRun, type JsonObject, type Run, type RunLedger } from '../ledger/index.js';
import { silentLogger, type Logger } from '../log.js';
import { createBuiltinProvider, type Provider } from '../providers/index.js';
import type { Scene } from '../providers/scene.js';
import type { Evaluation } from '../rubric/index.js';
import type { GenerationTool } from '../tool.js';

export interface EngineOptions {
  ledger: RunLedger;
  tools: readonly GenerationTool[];
  /** Lease length the ledger grants; the engine renews at a third of it. */
  leaseMs: number;
  /** Default: the built-in renderer, on one worker thread per concurrent run. */
  provider?: Provider;
  concurrency?: number;
  /** Slows every phase step, so the phase stream can be watched and crash tests can land inside one. */
  phaseDelayMs?: number;
  /** How often an idle worker looks for runs queued by other processes or left by dead workers. */
  idlePollMs?: number;
  log?: Logger;
}

/** The seed used when the caller gives none: taken from the fingerprint, so a replay gets the same one. */
export function derivedSeed(fingerprint: string): number {
  return Number.parseInt(fingerprint.slice(0, 8), 16);
}

export function seedOf(run: Pick<Run, 'args' | 'fingerprint'>): number {
  return typeof run.args.seed === 'number' ? run.args.seed : derivedSeed(run.fingerprint);
}

/** Progress after `done` of `total` variants are rendered: rendering spans 0.5 → 0.95. */
function renderProgress(done: number, total: number): number {
  return 0.5 + (0.45 * done) / Math.max(total, 1);
}

const SWEEP_EVERY_MS = 3600_000;
/**
 * A run whose worker died this many times is failed rather than handed on again: something in it
 * (a scene the renderer chokes on, say) would otherwise take down every worker that touches it.
 */
export const MAX_ATTEMPTS = 5;

export class Engine {
  readonly owner = `${hostname()}:${process.pid}:${nanoid(6)}`;
  private readonly ledger: RunLedger;
  private readonly tools: Map<string, GenerationTool>;
  private readonly provider: Provider;
  private readonly concurrency: number;
  private readonly phaseDelayMs: number;
  private readonly idlePollMs: number;
  private readonly renewEveryMs: number;
  private readonly log: Logger;
  private readonly changes = new EventEmitter();
  private readonly active = new Map<string, AbortController>();
  private waiters: (() => void)[] = [];
  private loops: Promise<void>[] = [];
  private running = false;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(opts: EngineOptions) {
    this.ledger = opts.ledger;
    this.tools = new Map(opts.tools.map((t) => [t.name, t]));
    this.concurrency = opts.concurrency ?? 2;
    this.provider = opts.provider ?? createBuiltinProvider(this.concurrency);
    this.phaseDelayMs = opts.phaseDelayMs ?? 0;
    this.idlePollMs = opts.idlePollMs ?? 500;
    this.renewEveryMs = Math.max(50, Math.floor(opts.leaseMs / 3));
    this.log = opts.log ?? silentLogger;
    this.changes.setMaxListeners(0);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loops = Array.from({ length: this.concurrency }, (_, i) => this.work(`${this.owner}/${i}`));
    void this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
    this.sweepTimer.unref();
  }

  /** Stop claiming, interrupt runs in progress and give their leases back so another worker resumes them. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.sweepTimer);
    for (const controller of this.active.values()) controller.abort();
    this.wake();
    await Promise.all(this.loops);
    await this.provider.close();
  }

  /** A run was queued here: an idle worker can take it now rather than at its next poll. */
  wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  /** Something about a run changed (here, or by a caller such as cancel): wake whoever waits on it. */
  notify(runId: string): void {
    this.changes.emit(runId);
  }

  /**
   * Follow a run until it ends, `seconds` pass or `signal` aborts; `onChange` sees the run as found,
   * then every new phase or progress. Polls the ledger too, because another process may be the one running it.
   */
  async waitFor(
    tenant: string,
    runId: string,
    seconds: number,
    opts: { signal?: AbortSignal; onChange?: (run: Run) => void | Promise<void> } = {},
  ): Promise<Run> {
    const deadline = Date.now() + seconds * 1000;
    let run = await this.ledger.getRun(tenant, runId);
    await opts.onChange?.(run); // it may have moved on since the caller last looked
    while (!isTerminal(run.phase) && !opts.signal?.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await this.changed(runId, Math.min(left, 250), opts.signal);
      const next = await this.ledger.getRun(tenant, runId);
      if (next.phases.length !== run.phases.length || next.progress !== run.progress) await opts.onChange?.(next);
      run = next;
    }
    return run;
  }

  private changed(runId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.changes.off(runId, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.changes.once(runId, done);
      signal?.addEventListener('abort', done, { once: true });
    });
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
    const heartbeat = setInterval(() => {
      this.ledger.renew(run.id, owner).then(
        (held) => held || controller.abort(),
        () => undefined, // a busy store: the next beat tries again before the lease runs out
      );
    }, this.renewEveryMs);
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
      this.notify(run.id);
    }
    return true;
  }

  /** Runs the remaining phases of `run`, resuming after the last stored recovery point. */
  private async execute(run: ClaimedRun, owner: string, signal: AbortSignal): Promise<void> {
    if (run.attempts > MAX_ATTEMPTS) {
      throw new GenerationFailedError(`Gave up after ${MAX_ATTEMPTS} attempts: every worker that took this run died.`, {
        attempts: run.attempts - 1,
      });
    }
    const tool = this.tools.get(run.tool);
    if (tool === undefined) throw new GenerationFailedError(`This server has no tool named ${run.tool}.`, { tool: run.tool });
    const args = tool.input.parse(run.args);
    const seed = seedOf(run);
    // Null from the ledger means the run is no longer ours (canceled, deleted or taken over): stop quietly.
    const advance = async (to: Phase, output?: JsonObject) => {
      const moved = await this.ledger.advance(run.id, owner, to, output);
      this.notify(run.id);
      if (moved === null) throw new LeaseLost();
    };

    if (run.phase === Phase.queued) await advance(Phase.composing);
    let scenes = (run.recovery[Phase.composing]?.scenes as Scene[] | undefined) ?? null;
    if (scenes === null || run.phase === Phase.queued || run.phase === Phase.composing) {
      await this.delay(signal);
      scenes = tool.compose(args, seed);
      await advance(Phase.rendering, { scenes: scenes as unknown as JsonObject[] } as JsonObject);
    }

    const rendered = new Set(run.assets.map((a) => a.n));
    const brand = tool.brandKit(args);
    for (const [n, scene] of scenes.entries()) {
      if (rendered.has(n)) continue;
      await this.delay(signal);
      const image = await this.provider.render(scene, brand, { idempotencyKey: `${run.id}/${n}` });
      const meta = { width: image.width, height: image.height, evaluation: image.evaluation } as unknown as JsonObject;
      const asset = { bytes: image.png, mime: 'image/png', meta };
      const held = await this.ledger.attachAsset(run.id, owner, n, asset, renderProgress(n + 1, scenes.length));
      this.notify(run.id);
      if (!held) throw new LeaseLost();
    }

    const assets = await this.ledger.listAssets(run.tenant, run.id);
    const evaluations = assets.map((a) => ({ n: a.n, ...(a.meta.evaluation as unknown as Evaluation) }));
    const passed = evaluations.reduce((sum, e) => sum + e.passed, 0);
    const tested = evaluations.reduce((sum, e) => sum + e.tested, 0);
    // Each variant's score honours the brand kit's weights; the run's is their mean.
    const score = evaluations.reduce((sum, e) => sum + e.score, 0) / Math.max(evaluations.length, 1);
    const result = {
      seed,
      generator: { provider: this.provider.id, version: this.provider.version },
      assets: assets.map((a) => ({
        n: a.n,
        uri: `runs://${run.id}/assets/${a.n}`,
        mime: a.mime,
        size: a.size,
        sha256: a.sha256,
        width: a.meta.width,
        height: a.meta.height,
      })),
      evaluation: {
        score,
        passed,
        tested,
        variants: evaluations,
      },
    };
    const finished = await this.ledger.finish(run.id, owner, result as unknown as JsonObject);
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
