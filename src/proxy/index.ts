// runledger proxy: another MCP server's tools, served with every mutating one fenced by the ledger.
// The same transports serve it as serve runledger itself (stdio, or Streamable HTTP with tenants).
import type { Config, ProxyConfig } from '../config.js';
import { openLedger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { Serving } from '../runtime.js';
import { RunService } from '../runs.js';
import { VERSION } from '../version.js';
import { Fence } from './fence.js';
import { createProxyServer, isFenced } from './server.js';
import { Upstream } from './upstream.js';

export async function createProxyRuntime(config: Config, log: Logger): Promise<Serving> {
  const proxy = config.proxy as ProxyConfig;
  const upstream = new Upstream(proxy.upstream, log);
  // Before the ledger opens: an upstream that cannot start stops the proxy with nothing to undo.
  const session = await upstream.connect();
  const tools = await upstream.listTools();
  const policy = { fence: new Set(proxy.fence), pass: new Set(proxy.pass) };
  for (const name of [...proxy.fence, ...proxy.pass]) {
    if (!tools.some((tool) => tool.name === name)) log.warn(`--fence/--pass names ${name}, which the upstream does not offer (yet)`);
  }
  const ledger = await openLedger({ url: config.db, schema: config.dbSchema, poolSize: config.dbPoolSize, leaseMs: config.leaseMs });
  const runs = new RunService(ledger, log);
  const upstreamName = session.info?.name ?? 'upstream';
  const fence = new Fence({ ledger, runs, waitMs: proxy.waitSeconds * 1000, retryErrors: proxy.retryErrors, upstreamName, log });
  let stopping: Promise<void> | undefined;
  return {
    ledger,
    createMcpServer: (tenantOf) =>
      createProxyServer({ upstream, session, fence, policy, tenantOf, upstreamTimeoutMs: proxy.upstreamTimeoutMs, version: VERSION, log }),
    start: () => undefined,
    describe: () => ({
      db: ledger.describe(),
      upstream: upstream.describe(),
      fenced: tools.filter((tool) => isFenced(tool, policy)).map((tool) => tool.name),
      passed: tools.filter((tool) => !isFenced(tool, policy)).map((tool) => tool.name),
    }),
    shutdown: () =>
      (stopping ??= (async () => {
        await upstream.close();
        runs.close();
        await ledger.close();
      })()),
  };
}
