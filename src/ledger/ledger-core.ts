// The machinery under every ledger verb: the store and the clock, announcing a committed change, one
// transaction on a run its worker holds, one phase move, and what this process remembers of runs. The
// verbs extend it by role, WorkerVerbs (worker-verbs.ts) then Ledger (ledger.ts), so that one object
// still implements every port while no one file holds them all.
import { BoundedMap } from '../bounded-map.js';
import { failpoint } from '../failpoints.js';
import { ChangeFeed } from './change-feed.js';
import type { Phase } from './phases.js';
import { ReplayCounter } from './replay-counter.js';
import { DEFAULT_LEASE_MS, DEFAULT_RETENTION_MS, holdsLease, moved, toRun } from './rules.js';
import type { LedgerStore, RunRecord, StoreOps, StoredRun } from './store.js';
import type { ChargeSource, JsonObject, Run, RunChange, RunError } from './types.js';

export interface LedgerOptions {
  leaseMs?: number | undefined;
  retentionMs?: number | undefined;
  /** Milliseconds since the epoch; tests pass a fake clock. */
  clock?: (() => number) | undefined;
  /** How often replay counts are written back (they are batched off the replay path). */
  replayFlushMs?: number | undefined;
}

/** What a phase move stores beside the new phase: the recovery point of the phase it leaves (output), or the result. */
export type MoveData = {
  output?: object | undefined;
  result?: object;
  charge?: ChargeSource | undefined;
  error?: RunError;
};

export abstract class LedgerCore {
  readonly leaseMs: number;
  protected readonly now: () => number;
  protected readonly retentionMs: number;
  private readonly changes = new ChangeFeed();
  protected readonly replays: ReplayCounter;
  /** A done run's result never changes: read once, then remembered. */
  protected readonly finishedResults = new BoundedMap<string, JsonObject>(4096);
  private closed = false;

  constructor(
    protected readonly store: LedgerStore,
    opts: LedgerOptions = {},
  ) {
    this.now = opts.clock ?? Date.now;
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.replays = new ReplayCounter(
      (counts) => this.store.write(async (tx) => tx.addReplays(counts)),
      opts.replayFlushMs ?? 1000,
    );
    store.onAnnounced?.((change) => this.changes.emit(change));
  }

  describe(): string {
    return this.store.location;
  }

  subscribe(listener: (change: RunChange) => void): () => void {
    return this.changes.subscribe(listener);
  }

  get hearsOtherProcesses(): boolean {
    return this.store.onAnnounced !== undefined;
  }

  /** After a commit: this process's listeners now, other processes through the store. */
  protected publish(changes: RunChange[]): void {
    for (const change of changes) this.changes.emit(change);
    this.store.announce?.(changes);
  }

  /** One transaction on a run `owner` holds; null, with nothing written, when it no longer does. */
  protected held<T>(
    runId: string,
    owner: string,
    body: (tx: StoreOps, run: StoredRun) => Promise<T>,
    opts?: { durable?: boolean },
  ): Promise<T | null> {
    return this.store.write(async (tx) => {
      const run = await tx.runById(runId, true);
      return holdsLease(run, owner) ? body(tx, run) : null;
    }, opts);
  }

  /** One forward move inside a transaction: its timestamp, its recovery point or result, and on done the charge. */
  protected async move(
    tx: StoreOps,
    run: StoredRun,
    to: Phase,
    data: MoveData,
  ): Promise<{ record: RunRecord; run: Run }> {
    const now = this.now();
    const next = moved(run, to, now, this.leaseMs, data.error);
    await tx.writeRun(next.run);
    let result: JsonObject | null = null;
    if (data.result !== undefined) {
      const json = JSON.stringify(data.result);
      await tx.putResult(run.id, json);
      // A copy, as a later read would give: the caller keeps its own object.
      result = JSON.parse(json) as JsonObject;
    } else if (next.dropRecovery) {
      await tx.putRecovery(run.id, null);
    } else if (data.output !== undefined) {
      await tx.putRecovery(run.id, { ...(await tx.recoveryOf(run.id)), [run.phase]: data.output });
    }
    if (next.charge) {
      await tx.charge({
        runId: run.id,
        tenant: run.tenant,
        tool: run.tool,
        credits: run.cost,
        provider: data.charge?.provider ?? null,
        model: data.charge?.model ?? null,
        at: now,
      });
      failpoint('billing', run.tool);
    }
    // The run as the writes above left it, without reading it back.
    return { record: next.run, run: toRun(next.run, run.args, result) };
  }

  /** Runs gone from the store: nothing remembered of them may answer again. */
  protected forgotten(runIds: readonly string[]): void {
    for (const id of runIds) {
      this.replays.forget(id);
      this.finishedResults.delete(id);
    }
  }

  ping(): Promise<void> {
    return this.store.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.replays.close();
    await this.store.close();
  }
}
