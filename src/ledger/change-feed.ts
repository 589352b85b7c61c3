// Listeners for run changes, shared by the backends: SQLite reports its own commits, PostgreSQL what
// LISTEN hears from every replica.
import type { RunChange } from './types.js';

export class ChangeFeed {
  private readonly listeners = new Set<(change: RunChange) => void>();

  subscribe(listener: (change: RunChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(change: RunChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch {
        // A listener's fault is its own; the write it reports has committed regardless.
      }
    }
  }
}
