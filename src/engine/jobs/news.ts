// How a step of a job run that waits (on the job's status, on its orphan, on an earlier run it takes an
// image from) hears of its run sooner than its timer: the engine passes on every change the ledger hears
// of, and a waiter it names wakes.
import type { WorkerPort } from '../../ledger/index.js';
import type { Logger } from '../../log.js';

export class RunNews {
  /** Who waits on each run: woken by any change of it the ledger hears of (a webhook, from any replica). */
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    private readonly ledger: Pick<WorkerPort, 'webhookDeliveries'>,
    private readonly log: Logger,
  ) {}

  /** Wakes whoever waits on this run. */
  heard(runId: string): void {
    for (const wake of this.waiters.get(runId) ?? []) wake();
  }

  /**
   * Waits `ms`, or less when a webhook for the run arrives (any replica may store it; the ledger's change
   * feed says so). `seen` holds the webhooks already acted on; null: any change of the run ends the wait.
   */
  async waitForNews(runId: string, ms: number, signal: AbortSignal, seen: Set<string> | null): Promise<void> {
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
}
