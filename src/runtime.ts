// One place that wires a ledger, an engine and the MCP server from a Config, for every transport.
import { catalogue } from '../tools/index.js';
import type { Config } from './config.js';
import { Engine } from './engine/engine.js';
import { SqliteLedger } from './ledger/index.js';
import type { Logger } from './log.js';
import { createServer, type Extra } from './server.js';
import { VERSION } from './version.js';

export interface Runtime {
  ledger: SqliteLedger;
  engine: Engine;
  createMcpServer(tenantOf: (extra: Extra) => string): ReturnType<typeof createServer>;
  /** Stop the workers (their leases are released for another process to resume) and close the ledger. */
  shutdown(): Promise<void>;
}

export function createRuntime(config: Config, log: Logger): Runtime {
  const ledger = new SqliteLedger({ path: config.db, leaseMs: config.leaseMs });
  const engine = new Engine({
    ledger,
    tools: catalogue,
    leaseMs: config.leaseMs,
    concurrency: config.concurrency,
    phaseDelayMs: config.phaseDelayMs,
    log,
  });
  let stopping: Promise<void> | undefined;
  return {
    ledger,
    engine,
    createMcpServer: (tenantOf) => createServer({ ledger, engine, tools: catalogue, tenantOf, version: VERSION, log }),
    shutdown: () =>
      (stopping ??= (async () => {
        await engine.stop();
        await ledger.close();
      })()),
  };
}
