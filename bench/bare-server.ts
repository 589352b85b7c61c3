// The baselines of `runledger bench` over stdio: a bare SDK server (McpServer) with
//   noop            — does nothing: what any MCP round trip costs;
//   durable_insert  — one durable SQLite insert (WAL, synchronous=FULL), when argv[2] names a file;
//   same_answer     — answers with the CallToolResult stored in the JSON file argv[3], so the cost of
//                     carrying an answer of runledger's size is measured apart from runledger's work.
// Run as a child process by stdio-bench.ts; nothing but protocol messages reaches stdout.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';

const [dbPath, answerPath] = process.argv.slice(2);
const server = new McpServer({ name: 'runledger-bench-bare', version: '0.0.0' });
server.registerTool('noop', { description: 'Does nothing.' }, async () => ({ content: [{ type: 'text', text: 'ok' }] }));
if (dbPath !== undefined) {
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
  server.registerTool('durable_insert', { description: 'One durable insert.' }, async () => {
    insert.run(randomUUID(), 'x'.repeat(300));
    return { content: [{ type: 'text', text: 'ok' }] };
  });
}
if (answerPath !== undefined) {
  const answer = JSON.parse(readFileSync(answerPath, 'utf8')) as CallToolResult;
  server.registerTool('same_answer', { description: 'Answers a fixed result.' }, async () => answer);
}
// The client closing our stdin ends the session, as it does for the real server.
process.stdin.once('end', () => process.exit(0));
await server.connect(new StdioServerTransport());
