// One place that wires a ledger, an engine, the run service and the MCP tools from a ServeConfig, for every
// transport. The tool entries are built once here; each session's server only binds a tenant.
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { catalogue } from '../tools/index.js';
import type { ServeConfig } from './config.js';
import { Engine } from './engine/engine.js';
import { createThreadPool } from './engine/threads.js';
import { configureProviders } from './providers/configure.js';
import { openLedger, type RunLedger } from './ledger/index.js';
import type { Logger } from './log.js';
import { createServer, mcpTools } from './mcp/server.js';
import { createWebhookReceiver, type WebhookReceiver } from './providers/webhooks.js';
import { RunService } from './runs.js';
import { VERSION } from './version.js';

/** What a transport serves: runledger itself, or runledger proxy in front of another server. */
export interface Serving {
  ledger: RunLedger;
  /** A server for one session of `tenant` (every stdio process has one; HTTP, one per session or request). */
  createMcpServer(tenant: string): { server: Server; close(): Promise<void> };
  /** Starts the background work, once the transport is listening. */
  start(): void;
  /** Takes a job provider's webhook (POST /webhooks/<provider> over HTTP); absent where nothing takes webhooks. */
  receiveWebhook?: WebhookReceiver;
  /** What the start-up log line says of what is served. */
  describe(): Record<string, unknown>;
  /** Stop the work (leases are released for another process to resume) and close the ledger. */
  shutdown(): Promise<void>;
}

export interface Runtime extends Serving {
  runs: RunService;
  engine: Engine;
}

export async function createRuntime(config: ServeConfig, log: Logger): Promise<Runtime> {
  const threads = createThreadPool(config.concurrency);
  // Before the ledger opens: a missing key or an unknown tool stops start-up with nothing to undo.
  const { providers, served } = configureProviders(
    config.providers,
    catalogue,
    (scene) => threads.run({ kind: 'render', scene }),
    log,
    process.env,
    config.jobs,
  );
  const ledger = await openLedger({
    url: config.db,
    schema: config.dbSchema,
    poolSize: config.dbPoolSize,
    leaseMs: config.leaseMs,
  });
  const runs = new RunService(ledger, log);
  const engine = new Engine({
    ledger,
    tools: served,
    threads,
    providers,
    concurrency: config.concurrency,
    phaseDelayMs: config.phaseDelayMs,
    log,
    jobs: config.jobs,
  });
  const tools = mcpTools(runs, served);
  const takesWebhooks = providers.jobProviders().some((p) => p.webhooks !== null);
  if (config.jobs.publicUrl !== null && config.http === null && takesWebhooks) {
    log.info(
      'webhooks are asked for at --public-url, but this process serves no /webhooks route (no --http): another replica on this ledger must, or jobs are polled',
    );
  }
  let stopping: Promise<void> | undefined;
  return {
    ledger,
    runs,
    engine,
    createMcpServer: (tenant) => createServer({ runs, tools, tenantOf: () => tenant, version: VERSION, log }),
    start: () => engine.start(),
    ...(takesWebhooks ? { receiveWebhook: createWebhookReceiver(providers, ledger, log) } : {}),
    describe: () => ({ db: ledger.describe(), concurrency: config.concurrency }),
    shutdown: () =>
      (stopping ??= (async () => {
        await engine.stop();
        await providers.close();
        await threads.close();
        runs.close();
        await ledger.close();
      })()),
  };
}
