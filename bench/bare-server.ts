// The baselines of the stdio benchmark: a bare SDK server (McpServer) with
//   noop            — does nothing: what any MCP round trip costs;
//   durable_insert  — one durable SQLite insert (WAL, synchronous=FULL) into the file argv[2];
//   floor_<name>    — one indexed SQLite point read from that file, then the CallToolResult stored under
//                     replays.<name> in the JSON file argv[3]: the least any ledger-backed replay of an
//                     answer that size can cost (the realistic floor);
//   floor_create    — the least any fenced create can cost: the product_shot arguments validated by the
//                     tool's own schema, their fingerprint, one durable insert of the key, fingerprint
//                     and arguments into a table unique on the key, then the CallToolResult stored under
//                     `create` in argv[3].
// Run as a child process by stdio-bench.ts; nothing but protocol messages reaches stdout.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { fingerprint, type JsonObject } from '../src/ledger/index.js';
import productShot from '../tools/product_shot.js';

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
server.registerTool('noop', { description: 'Does nothing.' }, async () => ({
  content: [{ type: 'text', text: 'ok' }],
}));
server.registerTool('durable_insert', { description: 'One durable insert.' }, async () => {
  insert.run(randomUUID(), 'x'.repeat(300));
  return { content: [{ type: 'text', text: 'ok' }] };
});
const answers = JSON.parse(readFileSync(answersPath, 'utf8')) as {
  replays?: Record<string, CallToolResult>;
  create?: CallToolResult;
};
for (const [name, answer] of Object.entries(answers.replays ?? {})) {
  server.registerTool(`floor_${name}`, { description: 'One point read, then a fixed answer.' }, async () => {
    if (lookup.get(readKey) === undefined) throw new Error('the floor row is missing');
    return answer;
  });
}
const createAnswer = answers.create;
if (createAnswer !== undefined) {
  db.exec(`CREATE TABLE IF NOT EXISTS creates (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, tool TEXT NOT NULL, idem_key TEXT NOT NULL, fingerprint TEXT NOT NULL, args TEXT NOT NULL,
    UNIQUE (tenant, tool, idem_key))`);
  const fence = db.prepare(
    'INSERT INTO creates (id, tenant, tool, idem_key, fingerprint, args) VALUES (?, ?, ?, ?, ?, ?)',
  );
  const inputSchema = productShot.input.extend({ idempotency_key: z.string() });
  server.registerTool(
    'floor_create',
    { description: 'Validate, fingerprint, one durable insert, a fixed answer.', inputSchema: inputSchema.shape },
    async (input) => {
      const { idempotency_key: key, ...args } = input;
      fence.run(randomUUID(), 'local', productShot.name, key, fingerprint(args as JsonObject), JSON.stringify(args));
      return createAnswer;
    },
  );
}
// The client closing our stdin ends the session, as it does for the real server.
process.stdin.once('end', () => process.exit(0));
await server.connect(new StdioServerTransport());
