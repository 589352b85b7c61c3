// runledger's create throughput over Streamable HTTP beside a bare SDK HTTP server's no-op calls, all
// measured in the same run: many concurrent sessions on loopback, each looping sequential calls.
// Both servers are child processes; the clients are the SDK's, all in this process.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { VERSION } from '../src/version.js';
import { BENCH_REQUEST, median, type Comparison } from './measure.js';

/** Concurrent sessions per server; each loops sequential calls. */
const CLIENTS = 64;
const ROUNDS = 5;
const ROUND_MS = 2500;
const WARMUP_MS = 2000;
const START_TIMEOUT_MS = 20_000;
/** Required throughput against the bare server's no-op calls. */
const REPLAY_TARGET = 0.8;
const FRESH_TARGET = 0.5;

export interface Child {
  process: ChildProcess;
  exited: Promise<void>;
  /** The last few KB of the child's stdout and stderr, for error messages. */
  tail(): string;
}

/**
 * Starts `node args…` and resolves with the child and the first match of `ready` in its output.
 * The output is drained for as long as the child runs, so a chatty child never blocks on a full pipe.
 * `onSpawn` runs as soon as the child has a pid, before it serves anything (e.g. to put it in a
 * cgroup); if it throws, the child is killed and start rejects.
 */
export async function start(
  args: string[],
  ready: RegExp,
  opts: { env?: NodeJS.ProcessEnv; onSpawn?: (pid: number) => void; timeoutMs?: number } = {},
): Promise<{ child: Child; match: RegExpExecArray }> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let tail = '';
  const child: Child = { process: proc, exited, tail: () => tail };
  if (opts.onSpawn !== undefined && proc.pid !== undefined) {
    try {
      opts.onSpawn(proc.pid);
    } catch (err) {
      proc.kill('SIGKILL');
      await exited;
      throw err;
    }
  }
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    let found = false;
    const timeoutMs = opts.timeoutMs ?? START_TIMEOUT_MS;
    const timer = setTimeout(
      () => reject(new Error(`bench: ${args[0]} did not start in ${timeoutMs} ms:\n${tail}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      tail = (tail + chunk.toString('utf8')).slice(-4000);
      const m = found ? null : ready.exec(tail);
      if (m !== null) {
        found = true;
        clearTimeout(timer);
        resolve(m);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    void exited.then(() => {
      clearTimeout(timer);
      if (!found)
        reject(new Error(`bench: ${args[0]} exited (${proc.exitCode ?? proc.signalCode}) before listening:\n${tail}`));
    });
  }).catch(async (err: unknown) => {
    await stop(child);
    throw err;
  });
  return { child, match };
}

/** SIGTERM, then SIGKILL if the child has not exited within 5 s. */
export async function stop(child: Child): Promise<void> {
  const proc = child.process;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await child.exited;
  clearTimeout(timer);
}

/** CPU seconds (user + system) a process has used so far, from /proc; undefined where there is none. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), counted from the state field (3) here; in clock ticks.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Opens `n` sessions on `url`; each client joins `into` as soon as it is connected, so cleanup finds it. */
export async function connect(url: string, n: number, into: Client[]): Promise<Client[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const client = new Client({ name: 'runledger-bench', version: VERSION });
      // No tools/list: the client then skips validating structuredContent against the output schema, so
      // both sides measure the wire and the server, not the client's schema checks.
      await client.connect(new StreamableHTTPClientTransport(new URL(url)));
      into.push(client);
      return client;
    }),
  );
}

export interface Side {
  name: string;
  clients: Client[];
  op: (client: Client) => Promise<void>;
  pid: number | undefined;
  rates: number[];
  calls: number;
  serverCpu: number;
  clientCpu: number;
}

/** Every client loops sequential calls until `ms` have passed; when recording, adds the side's calls/s over the whole span and CPU. */
export async function drive(side: Side, ms: number, record: boolean): Promise<void> {
  const serverCpu0 = cpuSeconds(side.pid);
  const clientCpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let calls = 0;
  await Promise.all(
    side.clients.map(async (client) => {
      while (process.hrtime.bigint() < deadline) {
        await side.op(client);
        calls++;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (!record) return;
  side.rates.push(calls / seconds);
  side.calls += calls;
  const serverCpu1 = cpuSeconds(side.pid);
  if (serverCpu0 !== undefined && serverCpu1 !== undefined) side.serverCpu += serverCpu1 - serverCpu0;
  const used = process.cpuUsage(clientCpu0);
  side.clientCpu += (used.user + used.system) / 1e6;
}

export async function benchHttp(): Promise<Comparison[]> {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-bench-http-'));
  const children: Child[] = [];
  const clients: Client[] = [];
  try {
    const bareServer = await start(
      [fileURLToPath(new URL('./bare-http-server.js', import.meta.url))],
      /\{"port":(\d+)\}/,
    );
    children.push(bareServer.child);
    const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
    const ledgerServer = await start(
      [cli, '--http', '--port', '0', '--db', join(dir, 'ledger.db'), '--concurrency', '0', '--log-level', 'info'],
      /serving MCP over Streamable HTTP \{"url":"(http:\/\/127\.0\.0\.1:\d+\/mcp)"/,
    );
    children.push(ledgerServer.child);

    const bare = await connect(`http://127.0.0.1:${bareServer.match[1]}/mcp`, CLIENTS, clients);
    const ledger = await connect(ledgerServer.match[1]!, CLIENTS, clients);

    const noop = async (client: Client) => {
      const result = (await client.callTool({ name: 'noop', arguments: {} })) as CallToolResult;
      if (result.isError) throw new Error('bench: the bare server answered noop with an error');
    };
    const create = async (client: Client, key: string) => {
      const result = (await client.callTool({
        name: 'create_product_shot',
        arguments: { ...BENCH_REQUEST, idempotency_key: key },
      })) as CallToolResult;
      const data = (result.structuredContent ?? {}) as { run_id?: string; replayed?: boolean };
      if (result.isError || typeof data.run_id !== 'string') {
        throw new Error(
          `bench: create_product_shot failed: ${JSON.stringify(result.structuredContent ?? result.content)}`,
        );
      }
      return { runId: data.run_id, replayed: data.replayed };
    };

    const replayKey = `bench-replay-${randomUUID()}`;
    const original = await create(ledger[0]!, replayKey);
    if (original.replayed !== false)
      throw new Error(`bench: the first create of a new key was a replay: ${JSON.stringify(original)}`);
    // Every answer is checked: a replay must name the original run, and a fresh key must not replay.
    const replay = async (client: Client) => {
      const answer = await create(client, replayKey);
      if (answer.replayed !== true || answer.runId !== original.runId) {
        throw new Error(
          `bench: a retry with the same key was not a replay of ${original.runId}: ${JSON.stringify(answer)}`,
        );
      }
    };
    const fresh = async (client: Client) => {
      const answer = await create(client, randomUUID());
      if (answer.replayed !== false)
        throw new Error(`bench: a new key was answered as a replay: ${JSON.stringify(answer)}`);
    };

    const side = (name: string, sideClients: Client[], op: Side['op'], pid: number | undefined): Side => ({
      name,
      clients: sideClients,
      op,
      pid,
      rates: [],
      calls: 0,
      serverCpu: 0,
      clientCpu: 0,
    });
    const bareSide = side('bare', bare, noop, bareServer.child.process.pid);
    const replaySide = side('replay', ledger, replay, ledgerServer.child.process.pid);
    const freshSide = side('fresh', ledger, fresh, ledgerServer.child.process.pid);
    const sides = [bareSide, replaySide, freshSide];

    // Warm-up: the JIT, connection pools and both children's first calls, none of it recorded.
    for (const s of sides) await drive(s, WARMUP_MS, false);
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved rounds, each starting with a different side, so drift in the machine's load falls on all alike.
      for (let i = 0; i < sides.length; i++) await drive(sides[(round + i) % sides.length]!, ROUND_MS, true);
    }

    const rate = (s: Side) => median(s.rates);
    const perSec = (n: number) => `${Math.round(n).toLocaleString('en-US')}/s`;
    const rounds = (s: Side) => s.rates.map(perSec).join(', ');
    const cpu = (s: Side) => {
      const per = (seconds: number) => `${Math.round((seconds / s.calls) * 1e6)} µs`;
      return s.pid === undefined || s.serverCpu === 0
        ? `client ${per(s.clientCpu)}`
        : `server ${per(s.serverCpu)}, client ${per(s.clientCpu)}`;
    };
    const shared =
      `${CLIENTS} SDK client sessions per server on loopback, ${ROUNDS} interleaved rounds of ${ROUND_MS / 1000} s per side; ` +
      `the clients (this process) and both servers share the machine's cores, so these are whole-system rates.`;
    const row = (operation: string, side: Side, target: number, note: string): Comparison => ({
      operation: `${operation}, ${CLIENTS} sessions`,
      measured: rate(side),
      baselineLabel: `bare SDK HTTP server, no-op tool, ${CLIENTS} sessions`,
      baseline: rate(bareSide),
      ratio: rate(side) / rate(bareSide),
      target,
      unit: 'calls/s',
      note,
    });
    return [
      row(
        'replayed create over HTTP (same key, same arguments)',
        replaySide,
        REPLAY_TARGET,
        `Rounds: replayed ${rounds(replaySide)}; fresh ${rounds(freshSide)}; bare ${rounds(bareSide)}. ` +
          `CPU per call: replayed ${cpu(replaySide)}; fresh ${cpu(freshSide)}; bare ${cpu(bareSide)}.`,
      ),
      row('fresh create over HTTP (new key, durable)', freshSide, FRESH_TARGET, shared),
    ];
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(children.map(stop));
    rmSync(dir, { recursive: true, force: true });
  }
}
