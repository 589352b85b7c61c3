// runledger proxy: another MCP server's tools, served with every mutating one fenced by the ledger.
// The same transports serve it as serve runledger itself (stdio, or Streamable HTTP with tenants).
import type { ProxyCommandConfig } from '../config.js';
import { UpstreamUnavailableError } from '../errors.js';
import { openLedger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { Serving } from '../runtime.js';
import { RunService } from '../runs.js';
import { VERSION } from '../version.js';
import { Fence } from './fence.js';
import { createProxyServer, isFenced, isOffered } from './server.js';
import { UpstreamPool } from './upstreams.js';

export async function createProxyRuntime(config: ProxyCommandConfig, log: Logger): Promise<Serving> {
  const proxy = config.proxy;
  // Over stdio there is one tenant and one session: its upstream lives as long as the proxy.
  const upstreams = new UpstreamPool({
    target: proxy.upstream,
    max: proxy.upstreamMax,
    idleMs: config.http === null ? 0 : proxy.upstreamIdleMs,
    log,
  });
  // Before the ledger opens: an upstream that cannot start stops the proxy with nothing to undo. The
  // first session is the configured tenant's (over stdio, the one it keeps).
  const { session, tools, describe } = await upstreams
    .use(config.tenant, config.tenant, async (upstream) => ({
      session: await upstream.connect(),
      tools: await upstream.listTools(),
      describe: upstream.describe(),
    }))
    .catch(async (err: unknown) => {
      await upstreams.close();
      if (!(err instanceof UpstreamUnavailableError)) throw err;
      throw new UpstreamUnavailableError(
        err.message,
        err.cause,
        'Check that the upstream command runs on its own (or that --upstream-url answers), then start runledger proxy again.',
      );
    });
  const policy = { fence: new Set(proxy.fence), pass: new Set(proxy.pass) };
  for (const name of [...proxy.fence, ...proxy.pass]) {
    if (!tools.some((tool) => tool.name === name))
      log.warn(`--fence/--pass names ${name}, which the upstream does not offer (yet)`);
  }
  const ledger = await openLedger({
    url: config.db,
    schema: config.dbSchema,
    poolSize: config.dbPoolSize,
    leaseMs: config.leaseMs,
  });
  const runs = new RunService(ledger, log);
  const upstreamName = session.info?.name ?? 'upstream';
  const fence = new Fence({
    ledger,
    runs,
    waitMs: proxy.waitSeconds * 1000,
    retryErrors: proxy.retryErrors,
    upstreamName,
    log,
  });
  let stopping: Promise<void> | undefined;
  return {
    ledger,
    createMcpServer: (tenant) =>
      createProxyServer({
        upstreams,
        session,
        tenant,
        perSession: proxy.upstreamPerSession,
        fence,
        policy,
        upstreamTimeoutMs: proxy.upstreamTimeoutMs,
        version: VERSION,
        log,
      }),
    start: () => undefined,
    describe: () => ({
      db: ledger.describe(),
      upstream: describe,
      upstream_sessions: proxy.upstreamPerSession ? 'one per session' : 'one per tenant',
      fenced: tools.filter((tool) => isOffered(tool) && isFenced(tool, policy)).map((tool) => tool.name),
      passed: tools.filter((tool) => isOffered(tool) && !isFenced(tool, policy)).map((tool) => tool.name),
      not_offered: tools.filter((tool) => !isOffered(tool)).map((tool) => tool.name),
    }),
    shutdown: () =>
      (stopping ??= (async () => {
        await upstreams.close();
        runs.close();
        await ledger.close();
      })()),
  };
}
