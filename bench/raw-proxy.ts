// The lowest floor of the proxy benchmark: the least any stdio MCP proxy can cost, whatever it is built
// with. It forwards newline-delimited JSON-RPC between its client and its upstream untouched, except
// that a tools/call carrying an idempotency_key first makes one durable SQLite insert (WAL,
// synchronous=FULL) into the file argv[2] and is forwarded without the key. No SDK, no validation.
// With --store-answers, its answer is also inserted (committed without waiting for the disk) before
// it goes back: the least any proxy costs that keeps an answer a caller has seen across a crash.
// Run as a child process by proxy-bench.ts: raw-proxy [--store-answers] DB UPSTREAM_ARGS...
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import Database from 'better-sqlite3';

const storeAnswers = process.argv[2] === '--store-answers';
const [dbPath, ...upstreamArgs] = process.argv.slice(storeAnswers ? 3 : 2);
if (dbPath === undefined || upstreamArgs.length === 0)
  throw new Error('usage: raw-proxy [--store-answers] DB UPSTREAM_ARGS...');

const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS started (k TEXT PRIMARY KEY, tool TEXT NOT NULL)');
const start = db.prepare<[string, string]>('INSERT INTO started (k, tool) VALUES (?, ?)');
db.exec('CREATE TABLE IF NOT EXISTS answers (k TEXT PRIMARY KEY, answer TEXT NOT NULL)');
// Answers go through a connection of their own that never waits for the disk.
const lazy = new Database(dbPath);
lazy.pragma('synchronous = OFF');
const keep = lazy.prepare<[string, string]>('INSERT INTO answers (k, answer) VALUES (?, ?)');
/** Calls forwarded and not yet answered, by JSON-RPC id: their keys. */
const pending = new Map<unknown, string>();

const upstream = spawn(process.execPath, upstreamArgs, { stdio: ['pipe', 'pipe', 'inherit'] });

function eachLine(stream: Readable, onLine: (line: string) => void): void {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffered += chunk;
    for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      if (line.length > 0) onLine(line);
    }
  });
}

interface Message {
  id?: unknown;
  method?: string;
  result?: unknown;
  params?: { name?: string; arguments?: Record<string, unknown> };
}

eachLine(process.stdin, (line) => {
  const message = JSON.parse(line) as Message;
  const args = message.method === 'tools/call' ? message.params?.arguments : undefined;
  if (args === undefined || typeof args.idempotency_key !== 'string') {
    upstream.stdin.write(`${line}\n`);
    return;
  }
  const { idempotency_key: key, ...rest } = args;
  start.run(key, message.params?.name ?? '');
  if (storeAnswers) pending.set(message.id, key);
  message.params!.arguments = rest;
  upstream.stdin.write(`${JSON.stringify(message)}\n`);
});
eachLine(upstream.stdout, (line) => {
  if (pending.size > 0) {
    const message = JSON.parse(line) as Message;
    const key = pending.get(message.id);
    if (key !== undefined && message.method === undefined) {
      pending.delete(message.id);
      keep.run(key, JSON.stringify(message.result ?? null));
    }
  }
  process.stdout.write(`${line}\n`);
});
// The client closing our stdin ends the session, as it does for the real proxy.
process.stdin.once('end', () => {
  upstream.kill();
  process.exit(0);
});
