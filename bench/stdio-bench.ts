// runledger's create answers over real stdio beside bare SDK servers, all measured in the same run:
// - a replay (of a queued run, and of a finished one) beside a bare server that makes one indexed
//   SQLite point read and returns an answer of the same bytes: the realistic floor for any
//   ledger-backed replay (and, for context, beside a bare no-op);
// - a fresh create beside a bare server whose tool makes one durable SQLite insert, and, for context,
//   beside the least any fenced create can cost (validate, fingerprint, one durable insert, the same answer).
// Every server is a child process driven by the SDK's client.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  BENCH_REQUEST,
  connect,
  median,
  interleavedRounds,
  quantile,
  side,
  type Comparison,
  type Side,
} from './measure.js';

const ROUNDS = 5;
const CALLS_PER_ROUND = 200;
const WARMUP_CALLS = 300;
/** Allowed slowdowns against the baselines. */
const REPLAY_LIMIT = 1.05;
const FRESH_LIMIT = 1.25;
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

interface Answer {
  result: CallToolResult;
  runId: string;
  phase: string;
  replayed: boolean;
}

async function create(client: Client, key: string, extra: Record<string, unknown> = {}): Promise<Answer> {
  const result = (await client.callTool({
    name: 'create_product_shot',
    arguments: { ...BENCH_REQUEST, idempotency_key: key, ...extra },
  })) as CallToolResult;
  const data = (result.structuredContent ?? {}) as { run_id?: string; phase?: string; replayed?: boolean };
  if (result.isError || typeof data.run_id !== 'string') {
    throw new Error(`bench: create_product_shot failed: ${JSON.stringify(result.structuredContent ?? result.content)}`);
  }
  return { result, runId: data.run_id, phase: data.phase ?? '', replayed: data.replayed === true };
}

export async function benchStdio(): Promise<Comparison[]> {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-bench-stdio-'));
  const ledgerPath = join(dir, 'ledger.db');
  const clients: Client[] = [];
  try {
    // A finished run to replay: rendered by a server that renders, which then exits.
    const doneKey = randomUUID();
    const renderer = await connect([CLI, '--db', ledgerPath, '--concurrency', '1', '--log-level', 'warn']);
    const rendered = await create(renderer, doneKey, { wait_seconds: 50 });
    await renderer.close();
    if (rendered.phase !== 'done') throw new Error(`bench: the run to replay ended ${rendered.phase}`);

    // The measured server serves only, so the queued runs stay queued and nothing renders meanwhile.
    const ledger = await connect([CLI, '--db', ledgerPath, '--concurrency', '0', '--log-level', 'warn']);
    clients.push(ledger);
    const queuedKey = randomUUID();
    const queued = await create(ledger, queuedKey);
    const freshAnswer = await create(ledger, randomUUID());
    const replayAnswer = async (key: string, runId: string) => {
      const answer = await create(ledger, key);
      if (!answer.replayed || answer.runId !== runId)
        throw new Error(`bench: a retry of ${runId} was not a replay: ${JSON.stringify(answer)}`);
      return answer;
    };
    const answers = {
      queued: (await replayAnswer(queuedKey, queued.runId)).result,
      done: (await replayAnswer(doneKey, rendered.runId)).result,
    };
    const answersFile = join(dir, 'answers.json');
    writeFileSync(answersFile, JSON.stringify({ replays: answers, create: freshAnswer.result }));

    const bare = await connect([
      fileURLToPath(new URL('./bare-server.js', import.meta.url)),
      join(dir, 'bare.db'),
      answersFile,
    ]);
    clients.push(bare);
    // The floors receive the very arguments a replay sends, so both sides parse and validate the same request.
    const bareCall =
      (name: string, args: Record<string, unknown> = {}) =>
      async () => {
        const result = (await bare.callTool({ name, arguments: args })) as CallToolResult;
        if (result.isError) throw new Error(`bench: the bare server answered ${name} with an error`);
      };
    const fresh = async () => {
      const answer = await create(ledger, randomUUID());
      if (answer.replayed) throw new Error(`bench: a new key was answered as a replay: ${JSON.stringify(answer)}`);
    };

    const sides = {
      noop: side(bareCall('noop')),
      floorQueued: side(bareCall('floor_queued', { ...BENCH_REQUEST, idempotency_key: queuedKey })),
      floorDone: side(bareCall('floor_done', { ...BENCH_REQUEST, idempotency_key: doneKey })),
      replayQueued: side(() => replayAnswer(queuedKey, queued.runId)),
      replayDone: side(() => replayAnswer(doneKey, rendered.runId)),
      fresh: side(fresh),
      durableInsert: side(bareCall('durable_insert', { ...BENCH_REQUEST, idempotency_key: randomUUID() })),
      floorCreate: side(() => bareCall('floor_create', { ...BENCH_REQUEST, idempotency_key: randomUUID() })()),
    };
    await interleavedRounds(Object.values(sides), {
      warmup: WARMUP_CALLS,
      rounds: ROUNDS,
      callsPerRound: CALLS_PER_ROUND,
    });

    const p50 = (s: { samples: number[] }) => median(s.samples);
    const p90 = (s: { samples: number[] }) => quantile(s.samples, 0.9);
    const us = (n: number) => `${Math.round(n).toLocaleString('en-US')} µs`;
    const times = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    const bytes = (r: CallToolResult) => JSON.stringify(r).length.toLocaleString('en-US');
    const n = ROUNDS * CALLS_PER_ROUND;
    const latency = (
      operation: string,
      measured: Side,
      baselineLabel: string,
      baseline: Side,
      limit: number,
      note: string,
    ): Comparison => ({
      operation,
      measured: p50(measured),
      baselineLabel,
      baseline: p50(baseline),
      ratio: p50(baseline) / p50(measured),
      target: 1 / limit,
      unit: 'µs',
      lowerIsBetter: true,
      note: `${operation}: p90 ${us(p90(measured))} against ${us(p90(baseline))} (${times(p90(measured), p90(baseline))}). ${note}`,
    });
    return [
      latency(
        'replay of a queued run, p50',
        sides.replayQueued,
        `bare server, point read + the same ${bytes(answers.queued)}-byte answer, p50`,
        sides.floorQueued,
        REPLAY_LIMIT,
        `A bare no-op takes ${us(p50(sides.noop))} p50; the replay is ${times(p50(sides.replayQueued), p50(sides.noop))} that.`,
      ),
      latency(
        'replay of a finished run, p50',
        sides.replayDone,
        `bare server, point read + the same ${bytes(answers.done)}-byte answer, p50`,
        sides.floorDone,
        REPLAY_LIMIT,
        `The answer carries links with hashes, not the image; the replay is ${times(p50(sides.replayDone), p50(sides.noop))} a bare no-op.`,
      ),
      latency(
        'fresh create (new key, durable), p50',
        sides.fresh,
        'bare server, one durable insert, p50',
        sides.durableInsert,
        FRESH_LIMIT,
        `A bare server that validates the same arguments with the tool's schema, fingerprints them, makes one durable insert ` +
          `of key, fingerprint and arguments and answers the same ${bytes(freshAnswer.result)} bytes takes ${us(p50(sides.floorCreate))} p50, ` +
          `${times(p50(sides.floorCreate), p50(sides.durableInsert))} the baseline (the floor of any fenced create); runledger's is ` +
          `${times(p50(sides.fresh), p50(sides.floorCreate))} that floor. ${n} calls a side, in ${ROUNDS} interleaved rounds.`,
      ),
    ];
  } finally {
    // Closing a client ends its child (stdin closes; the server shuts down and releases the ledger file).
    await Promise.allSettled(clients.map((c) => c.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}
