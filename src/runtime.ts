// One place that wires a ledger, an engine, the run service and the MCP tools from a Config, for every
// transport. The tool entries are built once here; each session's server only binds a tenant.
import { catalogue } from '../tools/index.js';
import type { Config } from './config.js';
import { Engine } from './engine/engine.js';
import { createThreadPool } from './engine/threads.js';
import { configureProviders } from './providers/configure.js';
import { openLedger, type RunLedger } from './ledger/index.js';
import type { Logger } from './log.js';
import { createServer, mcpTools, type Extra } from './mcp/server.js';
import { RunService } from './runs.js';
import { VERSION } from './version.js';

export interface Runtime {
  ledger: RunLedger;
  runs: RunService;
  engine: Engine;
  createMcpServer(tenantOf: (extra: Extra) => string): ReturnType<typeof createServer>;
  /** Stop the workers (their leases are released for another process to resume) and close the ledger. */
  shutdown(): Promise<void>;
}

export async function createRuntime(config: Config, log: Logger): Promise<Runtime> {
  const threads = createThreadPool(config.concurrency);
  // Before the ledger opens: a missing key or an unknown tool stops start-up with nothing to undo.
  const providers = configureProviders(config.providers, catalogue, (scene) => threads.run({ kind: 'render', scene }), log);
  const ledger = await openLedger({ url: config.db, schema: config.dbSchema, poolSize: config.dbPoolSize, leaseMs: config.leaseMs });
  const runs = new RunService(ledger, log);
  const engine = new Engine({
    ledger,
    tools: catalogue,
    threads,
    providers,
    concurrency: config.concurrency,
    phaseDelayMs: config.phaseDelayMs,
    log,
  });
  const tools = mcpTools(runs, catalogue);
  let stopping: Promise<void> | undefined;
  return {
    ledger,
    runs,
    engine,
    createMcpServer: (tenantOf) => createServer({ runs, tools, tenantOf, version: VERSION, log }),
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
