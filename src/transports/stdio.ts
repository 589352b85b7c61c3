// MCP over stdio: what Claude Desktop, Cursor and VS Code launch. stdout carries protocol messages only.
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { ServingConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Serving } from '../runtime.js';
import { refuseDeepMessages } from './guard.js';

export async function serveStdio<C extends ServingConfig>(
  config: C,
  log: Logger,
  open: (config: C, log: Logger) => Promise<Serving>,
): Promise<void> {
  const runtime = await open(config, log);
  const { server } = runtime.createMcpServer(config.tenant);
  const transport = new StdioServerTransport();
  let exiting = false;
  const exit = (why: string) => {
    if (exiting) return;
    exiting = true;
    log.info(`shutting down (${why})`);
    void runtime.shutdown().finally(() => process.exit(0));
  };
  // The client closing our stdin is how stdio sessions normally end.
  process.stdin.once('end', () => exit('stdin closed'));
  // A client that went away mid-answer: nothing is left to answer, so end as for a closed stdin.
  process.stdout.on('error', () => exit('stdout closed'));
  process.once('SIGINT', () => exit('SIGINT'));
  process.once('SIGTERM', () => exit('SIGTERM'));
  await server.connect(transport);
  refuseDeepMessages(transport);
  runtime.start();
  log.info('serving MCP over stdio', { ...runtime.describe(), tenant: config.tenant });
}
