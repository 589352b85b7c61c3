// Serialising one synchronous SQLite connection behind an async interface.

/**
 * One holder at a time (Kysely's ConnectionMutex): a transaction whose body awaits between statements
 * keeps every other use of the connection out until it commits.
 */
export class ConnectionMutex {
  private held: Promise<void> | null = null;
  private release: (() => void) | null = null;

  get locked(): boolean {
    return this.held !== null;
  }

  async lock(): Promise<void> {
    while (this.held !== null) await this.held;
    this.held = new Promise((resolve) => (this.release = resolve));
  }

  unlock(): void {
    const release = this.release;
    this.held = null;
    this.release = null;
    release?.();
  }
}

/**
 * Group commit without making anyone wait for it: the first item of a tick is handed over at once,
 * alone; items that arrive while the rest of that tick runs are collected and handed over together
 * when it ends. A lone caller is never delayed; a burst shares one transaction (one fsync).
 */
export class TickBatch<T> {
  private items: T[] | null = null;
  constructor(private readonly flush: (items: T[]) => void) {}

  add(item: T): void {
    if (this.items !== null) {
      this.items.push(item);
      return;
    }
    this.items = [];
    setImmediate(() => {
      const items = this.items!;
      this.items = null;
      if (items.length > 0) this.flush(items);
    });
    this.flush([item]);
  }
}
