// The floor of the proxy benchmark: the least any MCP proxy built on the SDK can cost. A bare SDK
// Server for its client and a bare SDK Client to its upstream; a call with an idempotency_key makes
// one durable SQLite insert (WAL, synchronous=FULL) into the file argv[2] before it is forwarded,
// without the key. No fence, no run row, no answer stored: two SDK hops and one durable commit.
// Run as a child process by proxy-bench.ts: bare-proxy DB UPSTREAM_ARGS...
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  ListToolsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';

const [dbPath, ...upstreamArgs] = process.argv.slice(2);
if (dbPath === undefined || upstreamArgs.length === 0) throw new Error('usage: bare-proxy DB UPSTREAM_ARGS...');

const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS started (k TEXT PRIMARY KEY, tool TEXT NOT NULL)');
const start = db.prepare<[string, string]>('INSERT INTO started (k, tool) VALUES (?, ?)');

const upstream = new Client({ name: 'runledger-bench-bare-proxy', version: '0.0.0' });
await upstream.connect(new StdioClientTransport({ command: process.execPath, args: upstreamArgs, stderr: 'inherit' }));

const server = new Server({ name: 'runledger-bench-bare-proxy', version: '0.0.0' }, { capabilities: { tools: {} } });
server.setRequestHandler(ListToolsRequestSchema, () => upstream.listTools());
server.setRequestHandler(CallToolRequestSchema, async ({ params }) => {
  const { idempotency_key: key, ...args } = params.arguments ?? {};
  if (typeof key === 'string') start.run(key, params.name);
  return upstream.request(
    { method: 'tools/call', params: { name: params.name, arguments: args } },
    CallToolResultSchema,
  );
});
// The client closing our stdin ends the session, as it does for the real proxy.
process.stdin.once('end', () => void upstream.close().finally(() => process.exit(0)));
await server.connect(new StdioServerTransport());
