// The upstream sessions of runledger proxy: one per tenant, or one per downstream session. Nothing one
// tenant does upstream (its session's state, its log level, what the upstream tells it) reaches
// another. Sessions open on first use, a bound caps how many are open, and idle ones are closed.
import { UpstreamUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { Upstream, type UpstreamEvent, type UpstreamTarget } from './upstream.js';

export interface UpstreamPoolOptions {
  target: UpstreamTarget;
  /** Most upstream sessions open at once; past it the least recently used idle one is closed. */
  max: number;
  /** An upstream session unused this long is closed; 0 keeps it (stdio: one tenant, one upstream). */
  idleMs: number;
  log: Logger;
}

/** Where `{tenant}` stands in the upstream command or URL, the tenant's name goes. */
export const TENANT_PLACEHOLDER = '{tenant}';

export function targetFor(target: UpstreamTarget, tenant: string): UpstreamTarget {
  const fill = (text: string) => text.replaceAll(TENANT_PLACEHOLDER, tenant);
  return 'command' in target ? { command: target.command.map(fill) } : { ...target, url: fill(target.url) };
}

export class UpstreamPool {
  private readonly open = new Map<string, Upstream>();
  private readonly listeners = new Map<string, Set<(event: UpstreamEvent) => void>>();
  /** Each tool as last listed by any session, kept while sessions come and go (see lastKnownTool). */
  private readonly listed = new Map<string, Tool>();
  private readonly sweep: NodeJS.Timeout | undefined;

  constructor(private readonly opts: UpstreamPoolOptions) {
    if (opts.idleMs > 0) {
      this.sweep = setInterval(() => this.closeIdle(Date.now() - opts.idleMs), Math.min(opts.idleMs, 60_000));
      this.sweep.unref();
    }
  }

  /**
   * Runs `work` with the upstream session of `scope` (a tenant, or a downstream session), which is
   * not closed while `work` runs. Opened for `tenant` on first use: a stdio upstream is started with
   * RUNLEDGER_TENANT set and `{tenant}` filled in its command or URL. Throws upstream_unavailable
   * when the bound is reached and every open session is busy.
   */
  async use<T>(scope: string, tenant: string, work: (upstream: Upstream) => Promise<T>): Promise<T> {
    const upstream = this.get(scope, tenant);
    upstream.busy++;
    try {
      return await work(upstream);
    } finally {
      upstream.busy--;
      upstream.lastUsed = Date.now();
    }
  }

  private get(scope: string, tenant: string): Upstream {
    const known = this.open.get(scope);
    if (known !== undefined) return known;
    if (this.open.size >= this.opts.max) this.closeLeastRecentlyUsed();
    const upstream = new Upstream(
      targetFor(this.opts.target, tenant),
      this.opts.log,
      { RUNLEDGER_TENANT: tenant },
      (tools) => {
        for (const [name, tool] of tools) this.listed.set(name, tool);
      },
    );
    upstream.on((event) => {
      for (const listener of this.listeners.get(scope) ?? []) listener(event);
    });
    this.open.set(scope, upstream);
    return upstream;
  }

  /**
   * The tool's definition as last listed, when no session can be asked now (the upstream is away, or
   * every session is busy): an error answer must still fit the output schema the client holds.
   */
  lastKnownTool(name: string): Tool | undefined {
    return this.listed.get(name);
  }

  /** Hears what the scope's upstream session tells (whichever session that is, now or later). */
  on(scope: string, listener: (event: UpstreamEvent) => void): () => void {
    let set = this.listeners.get(scope);
    if (set === undefined) this.listeners.set(scope, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(scope);
    };
  }

  /** Closes the scope's upstream session (its downstream session ended). */
  async release(scope: string): Promise<void> {
    const upstream = this.open.get(scope);
    this.open.delete(scope);
    await upstream?.close();
  }

  get size(): number {
    return this.open.size;
  }

  async close(): Promise<void> {
    clearInterval(this.sweep);
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((upstream) => upstream.close().catch(() => undefined)));
  }

  private closeIdle(before: number): void {
    for (const [scope, upstream] of this.open) {
      if (upstream.busy === 0 && upstream.lastUsed < before) {
        this.open.delete(scope);
        void upstream.close().catch(() => undefined);
      }
    }
  }

  private closeLeastRecentlyUsed(): void {
    let oldest: [string, Upstream] | undefined;
    for (const entry of this.open)
      if (entry[1].busy === 0 && (oldest === undefined || entry[1].lastUsed < oldest[1].lastUsed)) oldest = entry;
    if (oldest === undefined) {
      throw new UpstreamUnavailableError(
        `All ${this.opts.max} upstream sessions (--upstream-max) are busy with calls; nothing was sent.`,
        undefined,
        'Nothing was stored: retry with the same idempotency_key in a few seconds.',
      );
    }
    this.open.delete(oldest[0]);
    void oldest[1].close().catch(() => undefined);
  }
}
