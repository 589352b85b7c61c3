// The HTTP baseline of `runledger bench`: a bare SDK server over Streamable HTTP with one no-op tool.
// Stateful sessions, an McpServer per session, no event store, no auth: what any MCP call over HTTP
// costs. Run as a child process by http-bench.ts; it listens on a free loopback port and prints
// `{"port":N}` as one line on stdout.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const sessions = new Map<string, StreamableHTTPServerTransport>();

function reject(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message } }));
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, fail) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        fail(err as Error);
      }
    });
    req.on('error', fail);
  });
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if ((req.url ?? '/').split('?')[0] !== '/mcp') return reject(res, 404, 'MCP is served at /mcp');
  const body = req.method === 'POST' ? await readJson(req) : undefined;
  const sessionId = req.headers['mcp-session-id'];
  if (typeof sessionId === 'string') {
    const transport = sessions.get(sessionId);
    if (transport === undefined) return reject(res, 404, 'Session not found');
    return transport.handleRequest(req, res, body);
  }
  if (req.method !== 'POST' || !isInitializeRequest(body)) return reject(res, 400, 'send initialize first');
  const server = new McpServer({ name: 'runledger-bench-bare-http', version: '0.0.0' });
  server.registerTool('noop', { description: 'Does nothing.' }, async () => ({
    content: [{ type: 'text', text: 'ok' }],
  }));
  const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
    sessionIdGenerator: randomUUID,
    onsessioninitialized: (id) => void sessions.set(id, transport),
  });
  transport.onclose = () => {
    if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
  };
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
}

const http = createServer((req, res) => {
  handle(req, res).catch(() => {
    if (!res.headersSent) reject(res, 500, 'Internal error');
    else res.end();
  });
});
http.keepAliveTimeout = 65_000;
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: (http.address() as AddressInfo).port }) + '\n');
});
const stop = () => {
  http.closeAllConnections();
  http.close(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
