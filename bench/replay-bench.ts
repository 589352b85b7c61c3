// How long `runledger replay` takes over a recorded agent session of 50 tools/call against runledger,
// with every fault: over stdio (every fault but stream-broken, which needs HTTP), and launched and
// reached over Streamable HTTP (every fault). The target is 10 s or less for either.
//   npm run build && node dist/bench/replay-bench.js [--rounds N]
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const CALLS = 50;
const TARGET_MS = 10_000;
const SERVER_FLAGS = ['--phase-delay-ms', '20', '--lease-ms', '1000', '--log-level', 'warn'];

const dir = () => mkdtempSync(join(tmpdir(), 'runledger-replay-bench-'));
const shot = (i: number) => ({ brief: `A ceramic mug, take ${i}`, product_name: 'Mug', variants: 1, style: 'studio' });

/** An agent's session of exactly CALLS calls: creates, their retries, changed arguments, polls, cards, the bill. */
async function record(out: string): Promise<void> {
  const server = [process.execPath, CLI, '--db', join(dir(), 'ledger.db'), ...SERVER_FLAGS];
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'record', '--out', out, '--', ...server],
    stderr: 'inherit',
  });
  const client = new Client({ name: 'replay-bench', version: '0' });
  await client.connect(transport);
  let calls = 0;
  const call = async (name: string, args: Record<string, unknown>) => {
    calls++;
    return (await client.callTool({ name, arguments: args })) as CallToolResult;
  };
  const runs: string[] = [];
  for (let i = 0; i < 15; i++) {
    const key = randomUUID();
    const created = await call('create_product_shot', { ...shot(i), idempotency_key: key });
    runs.push((created.structuredContent as { run_id: string }).run_id);
    if (i < 10) await call('create_product_shot', { ...shot(i), idempotency_key: key });
    if (i < 5) await call('create_product_shot', { ...shot(i), style: 'lifestyle', idempotency_key: key });
  }
  for (let i = 0; i < 8; i++)
    await call('create_social_card', { headline: `Sale ${i}`, idempotency_key: randomUUID() });
  for (const runId of runs.slice(0, 8)) await call('poll_run', { run_id: runId, wait_seconds: 50 });
  while (calls < CALLS) await call('get_usage', {});
  await client.close();
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Measured {
  ms: number;
  code: number | null;
  cases: number;
  calls: number;
  faults: number;
  restarts: number;
  broken: string[];
}

async function replay(transcript: string, args: string[]): Promise<Measured> {
  const report = join(dir(), 'report.json');
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, 'replay', transcript, '--report', report, '--seed', '1', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const ms = performance.now() - started;
  if (code !== 0 && code !== 1) throw new Error(`replay exited ${code}: ${stderr}`);
  const r = JSON.parse(readFileSync(report, 'utf8')) as {
    cases: { fault: string | null; batch: number | null }[];
    calls: unknown[];
    invariants: { id: string; status: string }[];
  };
  return {
    ms,
    code,
    cases: r.cases.length,
    calls: r.calls.length,
    faults: new Set(r.cases.map((c) => c.fault).filter((f) => f !== null)).size,
    restarts: new Set(r.cases.map((c) => c.batch).filter((b) => b !== null)).size,
    broken: r.invariants.filter((i) => i.status === 'broken').map((i) => i.id),
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
  const rounds = Number(values.rounds);
  const transcript = join(dir(), 'session.jsonl');
  await record(transcript);
  const recorded = readFileSync(transcript, 'utf8')
    .split('\n')
    .filter((line) => line.includes('"type":"call"')).length;
  process.stdout.write(
    `## runledger replay: ${recorded} recorded calls against runledger (--phase-delay-ms 20), every fault, seed 1\n\n`,
  );
  process.stdout.write(
    '| target | faults run | cases | calls | restarts | wall time (median of ' +
      rounds +
      ') | within 10 s |\n|---|---|---|---|---|---|---|\n',
  );
  const targets: [string, () => Promise<string[]>][] = [
    [
      'stdio (--server)',
      async () => ['--server', [process.execPath, CLI, '--db', join(dir(), 'ledger.db'), ...SERVER_FLAGS].join(' ')],
    ],
    [
      'HTTP (--server with --url)',
      async () => {
        const port = await freePort();
        const server = [
          process.execPath,
          CLI,
          '--http',
          '--port',
          String(port),
          '--db',
          join(dir(), 'ledger.db'),
          ...SERVER_FLAGS,
        ].join(' ');
        return ['--server', server, '--url', `http://127.0.0.1:${port}/mcp`];
      },
    ],
  ];
  let worst = 0;
  for (const [label, args] of targets) {
    const runs: Measured[] = [];
    for (let i = 0; i < rounds; i++) runs.push(await replay(transcript, await args()));
    const sorted = [...runs].sort((a, b) => a.ms - b.ms);
    const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
    worst = Math.max(worst, median.ms);
    if (median.broken.length > 0) process.stderr.write(`${label}: broken: ${median.broken.join(', ')}\n`);
    process.stdout.write(
      `| ${label} | ${median.faults} | ${median.cases} | ${median.calls} | ${median.restarts} | ${(median.ms / 1000).toFixed(1)} s (${runs.map((r) => (r.ms / 1000).toFixed(1)).join(', ')}) | ${median.ms <= TARGET_MS ? 'yes' : 'NO'} |\n`,
    );
  }
  return worst <= TARGET_MS ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`replay bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
