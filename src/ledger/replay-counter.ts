// Replay counts, batched off the replay path: a replay is a read, and counting it must not make it a
// write. Counts are written back every `everyMs`; a crash loses at most that much of a statistic,
// never a key.
export class ReplayCounter {
  private pending = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly write: (counts: [runId: string, count: number][]) => void | Promise<void>,
    everyMs: number,
  ) {
    this.timer = setInterval(() => void this.flush(), everyMs);
    this.timer.unref();
  }

  count(runId: string): void {
    this.pending.set(runId, (this.pending.get(runId) ?? 0) + 1);
  }

  /** The run is gone: its pending count has nowhere to go. */
  forget(runId: string): void {
    this.pending.delete(runId);
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    this.pending = new Map();
    try {
      await this.write(batch);
    } catch {
      // Busy, full or unreachable: keep the counts for the next flush.
      for (const [id, count] of batch) this.pending.set(id, (this.pending.get(id) ?? 0) + count);
    }
  }

  /** Stops the timer and writes what is pending. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
