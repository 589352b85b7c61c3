// The HTTP sessions this process holds, bounded per tenant and in all: each costs about 28 KB of heap
// (a server, a transport, their maps), and a client that opens sessions and never ends them would
// otherwise grow the process until it fell over, with every other tenant's sessions in it.

export interface SessionLimits {
  /** Sessions this process holds at once, over all tenants. */
  maxSessions: number;
  /** Sessions one tenant holds at once. */
  maxTenantSessions: number;
  /** A session with nothing in progress for this long is closed. */
  idleMs: number;
}

interface Entry<T> {
  readonly value: T;
  readonly tenant: string;
  close(): Promise<void>;
  lastSeen: number;
  /** Requests and streams in progress: a session is idle only when none are. */
  busy: number;
}

/** Why a new session was refused, and when a place may be free. */
export interface Refusal {
  scope: 'tenant' | 'server';
  retryAfterSeconds: number;
}

/** A place taken for a session being opened: filled once the session has its id, or given back. */
export interface Place<T> {
  fill(id: string, value: T, close: () => Promise<void>): void;
  /** Gives the place back unless it was filled; says whether it did. */
  release(): boolean;
}

export class SessionTable<T> {
  private readonly sessions = new Map<string, Entry<T>>();
  /** Places taken per tenant, sessions being opened included, so concurrent opens cannot pass a cap. */
  private readonly taken = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly limits: SessionLimits,
    private readonly clock: () => number = Date.now,
  ) {}

  get size(): number {
    return this.total;
  }

  /** Takes a place for one more session of `tenant`, or says why there is none. */
  reserve(tenant: string): Place<T> | Refusal {
    if (this.full(tenant)) this.sweep();
    if (this.full(tenant)) {
      const scope = (this.taken.get(tenant) ?? 0) >= this.limits.maxTenantSessions ? 'tenant' : 'server';
      return { scope, retryAfterSeconds: this.retryAfter(scope === 'tenant' ? tenant : undefined) };
    }
    this.take(tenant, 1);
    // Until filled, the place is this reservation's to give back; once filled, the session's.
    let state: 'held' | 'filled' | 'released' = 'held';
    return {
      fill: (id, value, close) => {
        if (state !== 'held') return;
        state = 'filled';
        this.sessions.set(id, { value, tenant, close, lastSeen: this.clock(), busy: 0 });
      },
      release: () => {
        if (state !== 'held') return false;
        state = 'released';
        this.take(tenant, -1);
        return true;
      },
    };
  }

  /** The session `id` of `tenant`: another tenant's is as unknown as one that never was. */
  get(id: string, tenant: string): T | undefined {
    const entry = this.sessions.get(id);
    return entry?.tenant === tenant ? entry.value : undefined;
  }

  /** Marks a request of session `id` begun; the returned function marks it ended. */
  begin(id: string): () => void {
    const entry = this.sessions.get(id);
    if (entry === undefined) return () => undefined;
    entry.busy++;
    entry.lastSeen = this.clock();
    return () => {
      entry.busy--;
      entry.lastSeen = this.clock();
    };
  }

  /** Forgets session `id` (it was closed); its place is free again. */
  remove(id: string): void {
    const entry = this.sessions.get(id);
    if (entry === undefined) return;
    this.sessions.delete(id);
    this.take(entry.tenant, -1);
  }

  /** Closes every session idle past the limit; their places are free at once. */
  sweep(): void {
    const cutoff = this.clock() - this.limits.idleMs;
    for (const [id, entry] of this.sessions) {
      if (entry.busy === 0 && entry.lastSeen < cutoff) {
        this.remove(id);
        void entry.close().catch(() => undefined);
      }
    }
  }

  /** Closes every session (at shutdown). */
  async closeAll(): Promise<void> {
    const all = [...this.sessions.values()];
    for (const id of [...this.sessions.keys()]) this.remove(id);
    await Promise.all(all.map((entry) => entry.close().catch(() => undefined)));
  }

  private full(tenant: string): boolean {
    return this.total >= this.limits.maxSessions || (this.taken.get(tenant) ?? 0) >= this.limits.maxTenantSessions;
  }

  private take(tenant: string, n: number): void {
    const count = (this.taken.get(tenant) ?? 0) + n;
    if (count === 0) this.taken.delete(tenant);
    else this.taken.set(tenant, count);
    this.total += n;
  }

  /** Seconds until the soonest idle session (of `tenant`, or of anyone) times out: at least 1. */
  private retryAfter(tenant: string | undefined): number {
    let soonest = this.limits.idleMs;
    const now = this.clock();
    for (const entry of this.sessions.values()) {
      if (entry.busy === 0 && (tenant === undefined || entry.tenant === tenant))
        soonest = Math.min(soonest, entry.lastSeen + this.limits.idleMs - now);
    }
    return Math.max(1, Math.ceil(soonest / 1000));
  }
}
