// The run service: create, preview, follow, cancel and delete runs, for every surface (the MCP tools,
// the CLI's `runs` commands). It owns the calls to the ledger; the engine learns of new runs from the
// ledger's change feed, so no caller has to remember to wake it.
import { EventEmitter } from 'node:events';
import { followWithPollRun, IdempotencyKeyReusedError } from './errors.js';
import {
  holderGone,
  isTerminal,
  Phase,
  type CallerPort,
  type CreateRequest,
  type Housekeeping,
  type JsonObject,
  type ListQuery,
  type Run,
  type RunPage,
  type StoredAsset,
  type Usage,
} from './ledger/index.js';
import { silentLogger, type Logger } from './log.js';
import type { GenerationTool } from './tool.js';

export interface FollowOptions {
  /** How long to wait for the run to end; 0 answers at once. */
  waitSeconds: number;
  signal?: AbortSignal;
  /** Sees the run as found, then every new phase or progress while waiting. */
  onChange?: (run: Run) => void | Promise<void>;
}

export interface Followed {
  run: Run;
  /** This call saw the run reach done: its answer is the first to show the finished images. */
  reachedDone: boolean;
}

export interface CreateCall {
  tool: GenerationTool;
  idempotencyKey: string;
  /** Validated arguments, schema defaults applied, without the per-call fields. */
  args: JsonObject;
  /** `fingerprint(args)` when the caller has it already. */
  fingerprint?: string;
}

export type Created = Followed & { replayed: boolean };

export type Preview =
  | { outcome: 'create'; cost: number }
  | { outcome: 'replay'; runId: string }
  | { outcome: 'conflict'; runId: string; differingFields: string[] };

function createRequest(tenant: string, call: CreateCall): CreateRequest {
  const { tool, idempotencyKey, args, fingerprint } = call;
  return { tenant, tool: tool.name, idempotencyKey, args, fingerprint, cost: tool.cost(args) };
}

/**
 * How often a waiter re-reads a run it has heard nothing about. A SQLite ledger reports only this
 * process's own writes, so another process running the run is seen by looking again; a shared server
 * database reports every replica's, and looking again only covers a gap in its feed (a replica that
 * died between its commit and its announcement, the listening connection reconnecting).
 */
const WAIT_POLL_MS = 250;
const FEED_GAP_POLL_MS = 5000;

/** What the run service needs of the ledger: a caller's verbs, and freeing a run whose holder died. */
export type RunsLedger = CallerPort & Pick<Housekeeping, 'releaseDeadHolders'>;

export class RunService {
  private readonly changed = new EventEmitter();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly ledger: RunsLedger,
    private readonly log: Logger = silentLogger,
  ) {
    this.changed.setMaxListeners(0);
    this.unsubscribe = ledger.subscribe((change) => this.changed.emit(change.runId));
  }

  async create(tenant: string, call: CreateCall, follow: FollowOptions): Promise<Created> {
    const outcome = await this.ledger.createOrReplay(createRequest(tenant, call));
    if (outcome.kind === 'conflict')
      throw new IdempotencyKeyReusedError(
        outcome.runId,
        outcome.differingFields,
        outcome.createdAt,
        followWithPollRun(outcome.runId),
      );
    if (outcome.kind === 'created')
      this.log.info('run created', { run_id: outcome.run.id, tool: call.tool.name, tenant });
    const replayed = outcome.kind === 'replayed';
    if (follow.waitSeconds <= 0 || isTerminal(outcome.run.phase))
      return { run: outcome.run, reachedDone: false, replayed };
    const followed = await this.follow(tenant, outcome.run, follow);
    return { run: followed.run, reachedDone: followed.reachedDone, replayed };
  }

  /** What a create would do — create, replay or conflict — without writing anything. */
  async preview(tenant: string, call: CreateCall): Promise<Preview> {
    const request = createRequest(tenant, call);
    const preview = await this.ledger.preview(request);
    if (preview.kind === 'create') return { outcome: 'create', cost: request.cost };
    if (preview.kind === 'replay') return { outcome: 'replay', runId: preview.run.id };
    return { outcome: 'conflict', runId: preview.runId, differingFields: preview.differingFields };
  }

  get(tenant: string, runId: string): Promise<Run> {
    return this.ledger.getRun(tenant, runId);
  }

  find(tenant: string, tool: string, idempotencyKey: string): Promise<Run> {
    return this.ledger.findRun(tenant, tool, idempotencyKey);
  }

  /** Follows a run until it ends, the wait runs out or the signal aborts. */
  async follow(tenant: string, run: Run, opts: FollowOptions): Promise<Followed> {
    if (opts.waitSeconds <= 0 || isTerminal(run.phase)) return { run, reachedDone: false };
    const deadline = Date.now() + opts.waitSeconds * 1000;
    let current = await this.ledger.getRun(tenant, run.id);
    await opts.onChange?.(current); // it may have moved on since the caller last looked
    while (!isTerminal(current.phase) && !opts.signal?.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await this.nextChange(
        run.id,
        Math.min(left, this.ledger.hearsOtherProcesses ? FEED_GAP_POLL_MS : WAIT_POLL_MS),
        opts.signal,
      );
      // A holder that died on this host need not be waited out: freed, the run is taken over now.
      if (current.lease !== null && holderGone(current.lease.holder)) await this.ledger.releaseDeadHolders(run.id);
      const next = await this.ledger.getRun(tenant, run.id);
      if (next.phases.length !== current.phases.length || next.progress !== current.progress)
        await opts.onChange?.(next);
      current = next;
    }
    return { run: current, reachedDone: current.phase === Phase.done };
  }

  cancel(tenant: string, runId: string) {
    return this.ledger.cancel(tenant, runId);
  }

  delete(tenant: string, runId: string): Promise<void> {
    return this.ledger.deleteRun(tenant, runId);
  }

  list(tenant: string, query?: ListQuery): Promise<RunPage> {
    return this.ledger.listRuns(tenant, query);
  }

  usage(tenant: string): Promise<Usage> {
    return this.ledger.usage(tenant);
  }

  asset(tenant: string, runId: string, n: number): Promise<StoredAsset> {
    return this.ledger.readAsset(tenant, runId, n);
  }

  close(): void {
    this.unsubscribe();
  }

  private nextChange(runId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.changed.off(runId, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.changed.once(runId, done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
