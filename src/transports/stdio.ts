// MCP over stdio: what Claude Desktop, Cursor and VS Code launch. stdout carries protocol messages only.
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { ServingConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Serving } from '../runtime.js';
import { refuseDeepMessages } from './guard.js';

/**
 * The SDK reads each stdin line as one JSON-RPC message and drops one it cannot (not JSON, a batch, no
 * method or result) with only an error event, leaving its sender waiting for an answer that never
 * comes. Answer it as JSON-RPC says, with id null, as the HTTP route answers a batch.
 */
function answerUnreadableLines(transport: StdioServerTransport, log: Logger): void {
  const report = transport.onerror;
  transport.onerror = (error) => {
    report?.(error);
    const notJson = error instanceof SyntaxError;
    if (!notJson && error.name !== 'ZodError') return;
    const [code, message] = notJson
      ? [-32700, 'Parse error: a line on stdin is not JSON; send one JSON-RPC message per line']
      : [-32600, 'Invalid Request: not one JSON-RPC message; batches are not supported, send one message per line'];
    log.warn('refused a line on stdin', { code });
    process.stdout.write(`${JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } })}\n`);
  };
}

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
  answerUnreadableLines(transport, log);
  runtime.start();
  log.info('serving MCP over stdio', { ...runtime.describe(), tenant: config.tenant });
}
