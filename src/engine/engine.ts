// In-process workers: claim runs with leases, move them through their phases, store a recovery point
// after each step, and bill on done. A run whose worker died is resumed by any engine sharing the
// ledger, from its last recovery point.
//
// This file is the workers' loop: claiming, the lease's heartbeat, and what a failed attempt leaves.
// The steps of a run are its provider's: an image provider's in images.ts, a job provider's in jobs/.
import { setTimeout as sleep } from 'node:timers/promises';
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
import { providerSet, type ProviderSet } from '../providers/index.js';
import type { GenerationTool } from '../tool.js';
import { ImageRunner, type ImageRun } from './images.js';
import type { JobRun } from './jobs/context.js';
import { JobRunner } from './jobs/runner.js';
import { AttemptFailed } from './jobs/submit.js';
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
  /** Carries out the runs of image providers. */
  private readonly images: ImageRunner;
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
    this.images = new ImageRunner(this.ledger, threads, this.log);
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
      let run: ClaimedRun | null = null;
      try {
        await this.freeDeadHolders();
        run = await this.ledger.claim(owner, { tools: this.runTools });
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

  /** Runs the remaining steps of `run` on the runner of its tool's provider: images.ts or jobs/runner.ts. */
  private async execute(run: ClaimedRun, owner: string, signal: AbortSignal, step: { now: string }): Promise<void> {
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
    return this.images.execute(run as ImageRun, owner, tool, provider, signal, held, step, () => this.delay(signal));
  }

  private async delay(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.phaseDelayMs > 0) await sleep(this.phaseDelayMs, undefined, { signal });
  }
}
