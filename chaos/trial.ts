// One chaos trial: 2–4 runledger servers on one ledger, killed (SIGKILL) at random moments while their
// clients keep creating from a small pool of keys and retry with the SAME key after any failure, as
// agents do. Then a clean server finishes the work, and the ledger is checked: one run per key, every
// acknowledged run present and done, one charge per done run and none for any other.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import pg from 'pg';
import { isPostgresUrl } from '../src/ledger/index.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPrng, type Prng } from '../src/prng.js';

export interface TrialOptions {
  seed: number;
  /** A fresh ledger for this trial: a SQLite file, or a PostgreSQL URL naming a fresh schema (?schema=). */
  db: string;
  /** The built CLI (dist/src/cli.js). */
  cli: string;
  /** How long servers are killed at random while clients create. */
  chaosMs: number;
  /** How long the clean server may take to finish what is left. */
  finishMs: number;
}

export interface TrialReport {
  seed: number;
  servers: number;
  kills: number;
  /** Create calls sent, and those answered with a run id (acknowledged). */
  creates: number;
  acknowledged: number;
  /** Creates answered without a run id, by error code (a server dying mid-call: "connection lost"). */
  refusals: Record<string, number>;
  runs: number;
  done: number;
  failed: number;
  /** Acknowledged runs not done at the end (still live, failed or canceled), or missing. */
  unfinished: string[];
  lost: string[];
  /** Keys answered with more than one run id. */
  duplicates: string[];
  /** Runs whose charge count is not 1 when done, or 0 otherwise. */
  chargeErrors: string[];
  maxAttempts: number;
  /** Servers that did not come up (after a kill, say), each with the end of what it wrote to stderr. */
  startFailures: string[];
  ms: number;
}

/** The tools and arguments of the key pool: cheap to render, one with two images to resume between. */
function keyPool(seed: number, size: number): { key: string; tool: string; args: Record<string, unknown> }[] {
  return Array.from({ length: size }, (_, i) => ({
    key: `chaos-trial-${seed}-key-${String(i).padStart(3, '0')}`,
    tool: i % 2 === 0 ? 'create_social_card' : 'create_product_shot',
    args:
      i % 2 === 0
        ? { headline: `Chaos card ${i}`, channel: 'landscape' }
        : { brief: `A jar, take ${i}`, product_name: `Jar ${i}`, variants: 2, size: { width: 512, height: 512 } },
  }));
}

interface Server {
  client: Client;
  pid: number;
  closed: Promise<void>;
}

async function startServer(cli: string, db: string, flags: string[]): Promise<Server> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, '--db', db, '--lease-ms', '1000', '--log-level', 'error', ...flags],
    stderr: 'pipe',
  });
  // Only errors are logged; the last of them say why a server that did not come up gave up.
  let stderrTail = '';
  transport.stderr?.on('data', (chunk: Buffer) => (stderrTail = (stderrTail + chunk.toString('utf8')).slice(-600)));
  const client = new Client({ name: 'runledger-chaos', version: '0' });
  const closed = new Promise<void>((resolve) => (transport.onclose = () => resolve()));
  try {
    await client.connect(transport);
  } catch (err) {
    await client.close().catch(() => {});
    throw new Error(
      `${err instanceof Error ? err.message : String(err)}${stderrTail === '' ? '' : `; stderr: ${stderrTail.trim()}`}`,
      { cause: err },
    );
  }
  return { client, pid: transport.pid!, closed };
}

type Answer = { runId: string } | { error: string };

async function create(server: Server, entry: ReturnType<typeof keyPool>[number]): Promise<Answer> {
  const result = (await server.client.callTool({
    name: entry.tool,
    arguments: { ...entry.args, idempotency_key: entry.key },
  })) as CallToolResult;
  const data = (result.structuredContent ?? {}) as { run_id?: string; error?: { code: string } };
  return typeof data.run_id === 'string' ? { runId: data.run_id } : { error: data.error?.code ?? 'no run id' };
}

const START_ATTEMPTS = 3;

export async function runTrial(opts: TrialOptions): Promise<TrialReport> {
  const started = Date.now();
  const rng: Prng = createPrng(opts.seed);
  const pool = keyPool(opts.seed, rng.int(4, 8));
  const serverCount = rng.int(2, 4);
  const serverFlags = () => ['--concurrency', '1', '--phase-delay-ms', String(rng.int(0, 120))];
  const report: TrialReport = {
    seed: opts.seed,
    servers: serverCount,
    kills: 0,
    creates: 0,
    acknowledged: 0,
    refusals: {},
    runs: 0,
    done: 0,
    failed: 0,
    unfinished: [],
    lost: [],
    duplicates: [],
    chargeErrors: [],
    maxAttempts: 0,
    startFailures: [],
    ms: 0,
  };
  // A server that does not come up is a finding of the trial, not the end of the run: it is noted,
  // and started again, a few times at most.
  const start = async (flags: string[]): Promise<Server | null> => {
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      try {
        return await startServer(opts.cli, opts.db, flags);
      } catch (err) {
        report.startFailures.push((err as Error).message);
      }
    }
    return null;
  };
  const answered = new Map<string, Set<string>>();
  const slots: (Server | null)[] = [];
  for (let i = 0; i < serverCount; i++) slots.push(await start(serverFlags()));
  let chaos = true;

  // Each slot's client creates in a loop; after any failure it retries the same key on whatever server
  // holds the slot by then.
  const clientLoop = async (slot: number, clientRng: Prng) => {
    let entry = clientRng.pick(pool);
    while (chaos) {
      const server = slots[slot]!;
      if (server === null) break;
      report.creates++;
      const answer = await create(server, entry).catch(() => ({ error: 'connection lost' }));
      if ('runId' in answer) {
        report.acknowledged++;
        let ids = answered.get(entry.key);
        if (ids === undefined) answered.set(entry.key, (ids = new Set()));
        ids.add(answer.runId);
        entry = clientRng.pick(pool);
        continue;
      }
      report.refusals[answer.error] = (report.refusals[answer.error] ?? 0) + 1;
      if (slots[slot] === server) {
        // A refusal that is not the server dying (busy storage, say): try again shortly.
        await sleep(20);
      }
    }
  };
  const killLoop = async () => {
    while (chaos) {
      await sleep(rng.int(150, 700));
      if (!chaos) break;
      const slot = rng.int(0, slots.length - 1);
      const victim = slots[slot]!;
      if (victim === null) continue;
      process.kill(victim.pid, 'SIGKILL');
      report.kills++;
      await victim.closed;
      slots[slot] = await start(serverFlags());
    }
  };
  const loops = [killLoop(), ...slots.map((_, i) => clientLoop(i, createPrng(opts.seed + i + 1)))];
  await sleep(opts.chaosMs);
  chaos = false;
  await Promise.all(loops);
  // The servers go down hard too: whatever they held is left for the clean one to take over.
  const alive = slots.filter((s) => s !== null);
  for (const server of alive) process.kill(server.pid, 'SIGKILL');
  await Promise.all(alive.map((s) => s.closed));

  // Without a finisher, what the killed servers left stays unfinished, and the check says so.
  const finisher = await start(['--concurrency', '2']);
  if (finisher !== null) await finishRuns(finisher, answered, Date.now() + opts.finishMs);
  check(await readRuns(opts.db), answered, report);
  report.ms = Date.now() - started;
  return report;
}

/** Waits, through a clean server, until every acknowledged run has ended or the deadline passes. */
async function finishRuns(finisher: Server, answered: Map<string, Set<string>>, deadline: number): Promise<void> {
  try {
    for (const ids of answered.values()) {
      for (const runId of ids) {
        for (;;) {
          const left = Math.max(0, Math.min(50, (deadline - Date.now()) / 1000));
          const polled = (await finisher.client.callTool({
            name: 'poll_run',
            arguments: { run_id: runId, wait_seconds: left },
          })) as CallToolResult;
          const phase = (polled.structuredContent as { phase?: string } | undefined)?.phase;
          if (phase !== 'queued' && phase !== 'composing' && phase !== 'rendering') break;
          if (Date.now() >= deadline) break;
        }
      }
    }
  } finally {
    await finisher.client.close();
  }
}

interface RunRow {
  id: string;
  idem_key: string;
  phase: string;
  attempts: number;
  charges: number;
}

const RUNS_WITH_CHARGES = `SELECT r.id, r.idem_key, r.phase, r.attempts, (SELECT count(*) FROM charges c WHERE c.run_id = r.id)::int AS charges FROM runs r`;

/** Every run with its charge count, read from the ledger itself rather than through a server. */
async function readRuns(db: string): Promise<RunRow[]> {
  if (isPostgresUrl(db)) {
    const url = new URL(db);
    const schema = url.searchParams.get('schema') ?? 'runledger';
    url.searchParams.delete('schema');
    const client = new pg.Client({ connectionString: url.toString(), options: `-c search_path=${schema}` });
    await client.connect();
    try {
      return (await client.query<RunRow>(RUNS_WITH_CHARGES)).rows;
    } finally {
      await client.end();
    }
  }
  // No server came up to create it: nothing was acknowledged, and there is nothing to read.
  if (!existsSync(db)) return [];
  const ledger = new Database(db, { readonly: true });
  try {
    return ledger.prepare<[], RunRow>(RUNS_WITH_CHARGES.replace('::int', '')).all();
  } finally {
    ledger.close();
  }
}

/** The invariants: one run per key, every acknowledged run present and done, one charge per done run. */
function check(runs: RunRow[], answered: Map<string, Set<string>>, report: TrialReport): void {
  const byId = new Map(runs.map((r) => [r.id, r]));
  report.runs = runs.length;
  report.done = runs.filter((r) => r.phase === 'done').length;
  report.failed = runs.filter((r) => r.phase === 'failed').length;
  report.maxAttempts = Math.max(0, ...runs.map((r) => r.attempts));
  for (const r of runs)
    if (r.charges !== (r.phase === 'done' ? 1 : 0))
      report.chargeErrors.push(`${r.id} (${r.phase}, ${r.charges} charges)`);
  const keysInLedger = new Map<string, number>();
  for (const r of runs) keysInLedger.set(r.idem_key, (keysInLedger.get(r.idem_key) ?? 0) + 1);
  for (const [key, ids] of answered) {
    if (ids.size > 1 || (keysInLedger.get(key) ?? 0) > 1) report.duplicates.push(`${key}: ${[...ids].join(', ')}`);
    for (const id of ids) {
      const run = byId.get(id);
      if (run === undefined) report.lost.push(`${key}: ${id}`);
      else if (run.phase !== 'done') report.unfinished.push(`${id} (${run.phase})`);
    }
  }
}

/** Whether a trial kept every invariant. */
export function passed(r: TrialReport): boolean {
  return (
    r.lost.length === 0 &&
    r.duplicates.length === 0 &&
    r.chargeErrors.length === 0 &&
    r.unfinished.length === 0 &&
    r.failed === 0 &&
    r.startFailures.length === 0
  );
}
