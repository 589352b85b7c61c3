// The baselines of the stdio benchmark: a bare SDK server (McpServer) with
//   noop            — does nothing: what any MCP round trip costs;
//   durable_insert  — one durable SQLite insert (WAL, synchronous=FULL) into the file argv[2];
//   floor_<name>    — one indexed SQLite point read from that file, then the CallToolResult stored under
//                     <name> in the JSON file argv[3]: the least any ledger-backed replay of an answer
//                     that size can cost (the realistic floor).
// Run as a child process by stdio-bench.ts; nothing but protocol messages reaches stdout.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';

const [dbPath, answersPath] = process.argv.slice(2);
if (dbPath === undefined || answersPath === undefined) throw new Error('usage: bare-server DB ANSWERS.json');

const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL)');
const insert = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
const lookup = db.prepare<[string], { k: string; v: string }>('SELECT k, v FROM t WHERE k = ?');
const readKey = randomUUID();
insert.run(readKey, 'x'.repeat(300));

const server = new McpServer({ name: 'runledger-bench-bare', version: '0.0.0' });
server.registerTool('noop', { description: 'Does nothing.' }, async () => ({ content: [{ type: 'text', text: 'ok' }] }));
server.registerTool('durable_insert', { description: 'One durable insert.' }, async () => {
  insert.run(randomUUID(), 'x'.repeat(300));
  return { content: [{ type: 'text', text: 'ok' }] };
});
const answers = JSON.parse(readFileSync(answersPath, 'utf8')) as Record<string, CallToolResult>;
for (const [name, answer] of Object.entries(answers)) {
  server.registerTool(`floor_${name}`, { description: 'One point read, then a fixed answer.' }, async () => {
    if (lookup.get(readKey) === undefined) throw new Error('the floor row is missing');
    return answer;
  });
}
// The client closing our stdin ends the session, as it does for the real server.
process.stdin.once('end', () => process.exit(0));
await server.connect(new StdioServerTransport());
