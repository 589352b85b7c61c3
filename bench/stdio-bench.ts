// runledger's create answer over real stdio beside its baselines, all measured in the same run:
// a bare SDK server's no-op round trip (what any MCP call costs) and one raw durable SQLite commit on
// the same disk (what a fresh create must add). Each side is a child process driven by the SDK's client.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import Database from 'better-sqlite3';
import { parseConfig } from '../src/config.js';
import { VERSION } from '../src/version.js';
import { BENCH_REQUEST, median, type Comparison } from './measure.js';

const ROUNDS = 5;
const CALLS_PER_ROUND = 200;
const WARMUP_CALLS = 300;
/** Allowed slowdowns against the baselines. */
const REPLAY_LIMIT = 1.15;
const FRESH_LIMIT = 1.2;

/** The q-quantile (0–1) of `values`, nearest rank. */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Runs `op` `count` times in sequence, pushing each one's duration in microseconds onto `into`. */
async function timeEach(count: number, op: (i: number) => unknown, into?: number[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint();
    await op(i);
    into?.push(Number(process.hrtime.bigint() - start) / 1000);
  }
}

async function connect(args: string[]): Promise<Client> {
  const client = new Client({ name: 'runledger-bench', version: VERSION });
  // No tools/list: the client then skips validating structuredContent against the output schema, so
  // both sides measure the wire and the server, not the client's schema checks.
  await client.connect(new StdioClientTransport({ command: process.execPath, args, stderr: 'inherit' }));
  return client;
}

/** Flags that keep the server from rendering while it is measured: serve only, or else make every phase wait. */
function serveOnlyFlags(): string[] {
  try {
    parseConfig(['--concurrency', '0']);
    return ['--concurrency', '0'];
  } catch {
    return ['--phase-delay-ms', '600000'];
  }
}

export async function benchStdio(): Promise<Comparison[]> {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-bench-stdio-'));
  const clients: Client[] = [];
  let raw: Database.Database | undefined;
  try {
    // Baseline B: one durable single-row commit, each INSERT its own transaction.
    raw = new Database(join(dir, 'raw.db'));
    raw.pragma('journal_mode = WAL');
    raw.pragma('synchronous = FULL');
    raw.exec('CREATE TABLE t (k TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, args TEXT NOT NULL)');
    const rawInsert = raw.prepare('INSERT INTO t (k, fingerprint, args) VALUES (?, ?, ?)');
    const argsText = JSON.stringify(BENCH_REQUEST);
    const fp = 'f'.repeat(64);
    // Random keys, as a fresh create inserts (agents send UUIDs), so both write into random index pages.
    const commit = () => rawInsert.run(randomUUID(), fp, argsText);

    // runledger itself, on a fresh ledger file; its replay answer is kept for the context baseline.
    const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
    const ledger = await connect([cli, '--db', join(dir, 'ledger.db'), ...serveOnlyFlags(), '--log-level', 'warn']);
    clients.push(ledger);
    const replayKey = `bench-replay-${randomUUID()}`;
    await ledger.callTool({ name: 'create_product_shot', arguments: { ...BENCH_REQUEST, idempotency_key: replayKey } });
    const replayAnswer = await ledger.callTool({ name: 'create_product_shot', arguments: { ...BENCH_REQUEST, idempotency_key: replayKey } });
    const answerFile = join(dir, 'answer.json');
    writeFileSync(answerFile, JSON.stringify({ content: replayAnswer.content, structuredContent: replayAnswer.structuredContent }));

    // Baseline A: a bare SDK server (no-op tool; and, for context, one durable insert and an answer of
    // runledger's size).
    const bare = await connect([fileURLToPath(new URL('./bare-server.js', import.meta.url)), join(dir, 'bare.db'), answerFile]);
    clients.push(bare);

    const bareCall = (name: string) => async () => {
      const result = (await bare.callTool({ name, arguments: {} })) as CallToolResult;
      if (result.isError) throw new Error(`bench: the bare server answered ${name} with an error`);
    };
    const noop = bareCall('noop');
    const create = async (key: string) => {
      const result = (await ledger.callTool({ name: 'create_product_shot', arguments: { ...BENCH_REQUEST, idempotency_key: key } })) as CallToolResult;
      const data = (result.structuredContent ?? {}) as { run_id?: string; replayed?: boolean };
      if (result.isError || typeof data.run_id !== 'string') {
        throw new Error(`bench: create_product_shot failed: ${JSON.stringify(result.structuredContent ?? result.content)}`);
      }
      return { runId: data.run_id, replayed: data.replayed };
    };

    const original = await create(replayKey);
    const replay = async () => {
      const answer = await create(replayKey);
      if (answer.replayed !== true || answer.runId !== original.runId) {
        throw new Error(`bench: a retry with the same key was not a replay of ${original.runId}: ${JSON.stringify(answer)}`);
      }
    };
    const fresh = async () => {
      const answer = await create(randomUUID());
      if (answer.replayed !== false) throw new Error(`bench: a new key was answered as a replay: ${JSON.stringify(answer)}`);
    };

    const sides = [
      { op: noop, samples: [] as number[] },
      { op: replay, samples: [] as number[] },
      { op: fresh, samples: [] as number[] },
      { op: commit, samples: [] as number[] },
      { op: bareCall('durable_insert'), samples: [] as number[] },
      { op: bareCall('same_answer'), samples: [] as number[] },
    ];
    const [bareRt, replayRt, freshRt, commitT, bareDurable, bareSameAnswer] = sides as [
      (typeof sides)[0],
      (typeof sides)[0],
      (typeof sides)[0],
      (typeof sides)[0],
      (typeof sides)[0],
      (typeof sides)[0],
    ];

    // Warm-up: the JIT, the page cache and both children's first calls, none of it recorded.
    for (const side of sides) await timeEach(WARMUP_CALLS, side.op);
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved rounds, each starting with a different side, so drift in the machine's load falls on all alike.
      for (let s = 0; s < sides.length; s++) {
        const side = sides[(round + s) % sides.length]!;
        await timeEach(CALLS_PER_ROUND, side.op, side.samples);
      }
    }

    const p50 = (side: { samples: number[] }) => median(side.samples);
    const p90 = (side: { samples: number[] }) => quantile(side.samples, 0.9);
    const us = (n: number) => `${Math.round(n).toLocaleString('en-US')} µs`;
    const times = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    const freshBase = p50(bareRt) + p50(commitT);
    const freshBase90 = p90(bareRt) + p90(commitT);
    const n = ROUNDS * CALLS_PER_ROUND;
    return [
      {
        operation: 'replayed create over stdio (same key, same arguments), p50',
        measured: p50(replayRt),
        baselineLabel: 'bare SDK server, no-op tool round trip p50',
        baseline: p50(bareRt),
        ratio: p50(bareRt) / p50(replayRt),
        target: 1 / REPLAY_LIMIT,
        unit: 'µs',
        lowerIsBetter: true,
        note:
          `p90: replayed create ${us(p90(replayRt))}, bare round trip ${us(p90(bareRt))} ` +
          `(${times(p90(replayRt), p90(bareRt))}); ${n} calls each, in ${ROUNDS} interleaved rounds.\n` +
          `Context: a bare server answering the same ${JSON.stringify(replayAnswer).length}-byte result takes ` +
          `${us(p50(bareSameAnswer))} p50 (${times(p50(bareSameAnswer), p50(bareRt))} the no-op); the replay is ` +
          `${times(p50(replayRt), p50(bareSameAnswer))} that.`,
      },
      {
        operation: 'fresh create over stdio (new key, durable), p50',
        measured: p50(freshRt),
        baselineLabel: `bare round trip + raw durable commit p50 (${us(p50(bareRt))} + ${us(p50(commitT))})`,
        baseline: freshBase,
        ratio: freshBase / p50(freshRt),
        target: 1 / FRESH_LIMIT,
        unit: 'µs',
        lowerIsBetter: true,
        note:
          `p90: fresh create ${us(p90(freshRt))}, bare round trip + durable commit ${us(freshBase90)} ` +
          `(${us(p90(bareRt))} + ${us(p90(commitT))}; ${times(p90(freshRt), freshBase90)}).\n` +
          `Context: a bare server whose tool makes one durable insert takes ${us(p50(bareDurable))} p50 ` +
          `(${times(p50(bareDurable), freshBase)} the sum above); the fresh create is ${times(p50(freshRt), p50(bareDurable))} that.`,
      },
    ];
  } finally {
    // Closing a client ends its child (stdin closes; the server shuts down and releases the ledger file).
    await Promise.allSettled(clients.map((c) => c.close()));
    raw?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
