// Replicas that scale (issue 19, item 5): fresh creates through three replicas sharing one PostgreSQL,
// beside the same clients on one replica, measured in interleaved rounds of the same run.
//
// On this 2-core machine the replicas, their clients and PostgreSQL share the cores, so uncapped
// replicas measure the machine: one replica already kept both cores busy. Here each replica runs in
// its own cgroup v1 with a CPU quota, so the replicas are the bottleneck and the clients and
// PostgreSQL have the rest of the cores. The clients are light (raw JSON-RPC over HTTP keep-alive,
// no SDK), so that their CPU stays small beside the replicas'. Each round also reads what every party
// used (the replicas, their cgroups' throttling, the clients, the replicas' PostgreSQL backends, the
// whole machine), so the table says whether the cap, and nothing else, was the limit.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { VERSION } from '../src/version.js';
import { cpuSeconds, start, stop, type Child } from './http-bench.js';
import { BENCH_REQUEST, median, type Comparison } from './measure.js';

const PG_URL = process.env.RUNLEDGER_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const CPU_ROOT = '/sys/fs/cgroup/cpu';
const PERIOD_US = 100_000;
/**
 * 0.15 core per replica: three take 0.45 of the two cores, and the clients and PostgreSQL, which
 * together cost nearly as much per create as a replica does (measured here: 0.7 ms beside its
 * 0.8 ms), about as much again, so the three-replica side needs under half the machine and leaves
 * room for the other work on it. A smaller cap would leave more room still, but makes a round's few
 * hundred creates too few to measure well.
 */
const QUOTA_US = 15_000;
/**
 * The quota is a ceiling; a weight ten times a plain process's makes it the floor too, so the other
 * work on this shared machine cannot hold a replica below its cap. Without it, in trials here, the
 * replicas got 0.14 core, throttled in 81–93% of periods instead of nearly all.
 */
const SHARES = 10_240;
const REPLICAS = 3;
/** Enough sessions to keep three capped replicas busy through their throttled gaps; each loops sequential calls. */
const CLIENTS = 48;
const ROUNDS = 5;
const ROUND_MS = 4000;
/**
 * A replica capped at 0.15 core also compiles at 0.15 core: in trials here its creates kept getting
 * cheaper for about a minute (1.4 ms of CPU each, then 1.0 ms), and rounds measured before that rose
 * with every round. So the three replicas warm up together for a minute, then the single one briefly.
 */
const WARMUP_THREE_MS = 60_000;
const WARMUP_ONE_MS = 5000;
const TARGET = 2.5;
/** A capped replica starts slowly: loading its modules is a few hundred ms of CPU at 0.15 core. */
const START_TIMEOUT_MS = 60_000;

export type ReplicaBench = { rows: Comparison[] } | { skipped: string };

/** A cgroup v1 `cpu` group with a quota, holding one replica and nothing else. */
class CpuCap {
  readonly path: string;

  constructor(name: string) {
    this.path = `${CPU_ROOT}/${name}`;
    mkdirSync(this.path);
    try {
      writeFileSync(`${this.path}/cpu.cfs_period_us`, String(PERIOD_US));
      writeFileSync(`${this.path}/cpu.cfs_quota_us`, String(QUOTA_US));
      writeFileSync(`${this.path}/cpu.shares`, String(SHARES));
    } catch (err) {
      rmdirSync(this.path);
      throw err;
    }
  }

  /** Moves a process, all its threads, into the group. */
  add(pid: number): void {
    writeFileSync(`${this.path}/cgroup.procs`, String(pid));
  }

  /** Scheduler periods so far, and those in which the quota ran out. */
  periods(): { all: number; throttled: number } {
    const stat = Object.fromEntries(
      readFileSync(`${this.path}/cpu.stat`, 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(' ') as [string, string]),
    );
    return { all: Number(stat.nr_periods), throttled: Number(stat.nr_throttled) };
  }

  /** rmdir, once the replica has exited (the kernel lets go of an exited task a moment later). */
  async remove(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        rmdirSync(this.path);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        if (attempt >= 50) throw err;
        await sleep(100);
      }
    }
  }
}

/** Empty groups left by a bench that was killed (its pid is in the name); one still in use is left alone. */
function removeStaleCaps(): void {
  for (const name of readdirSync(CPU_ROOT)) {
    const owner = /^runledger-bench-(\d+)-\d+$/.exec(name)?.[1];
    if (owner === undefined || existsSync(`/proc/${owner}`)) continue;
    try {
      rmdirSync(`${CPU_ROOT}/${name}`);
    } catch {
      // Not empty: a process still runs in it; not ours to end.
    }
  }
}

/** Why a CPU quota cannot be set here, or undefined when it can. */
function quotaUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `the CPU quota needs Linux cgroups, and this is ${process.platform}`;
  if (process.getuid?.() !== 0) return `setting a CPU quota needs root, and this runs as uid ${process.getuid?.()}`;
  if (!existsSync(`${CPU_ROOT}/cpu.cfs_quota_us`))
    return `no cgroup v1 cpu controller at ${CPU_ROOT} (cpu.cfs_quota_us is missing)`;
  return undefined;
}

/** One POST on a kept-alive connection; the whole answer as text. */
function post(
  agent: http.Agent,
  url: URL,
  headers: Record<string, string>,
  body: unknown,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', (err) => reject(new Error(`bench: POST ${url.href} failed: ${err.message}`)));
    req.end(JSON.stringify(body));
  });
}

/**
 * An MCP session over raw JSON-RPC. The server answers a request with a short SSE stream (or, if it
 * were configured so, plain JSON); each event is one `data:` line holding one message, since the
 * server writes JSON without newlines, so finding the answer is a line scan.
 */
class LightSession {
  private id = '';
  private nextId = 1;

  constructor(
    private readonly agent: http.Agent,
    private readonly url: URL,
  ) {}

  async open(): Promise<void> {
    const init = await this.request('initialize', {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'runledger-bench', version: VERSION },
    });
    if (init.sessionId === undefined) throw new Error(`bench: initialize at ${this.url.href} gave no mcp-session-id`);
    this.id = init.sessionId;
    const note = await post(this.agent, this.url, this.headers(), {
      jsonrpc: '2.0',
      method: 'notifications/initialized',
    });
    if (note.status !== 202) throw new Error(`bench: notifications/initialized answered ${note.status}: ${note.text}`);
  }

  /** One fresh create; throws unless it made a new run. */
  async create(): Promise<void> {
    const { result } = await this.request('tools/call', {
      name: 'create_product_shot',
      arguments: { ...BENCH_REQUEST, idempotency_key: randomUUID() },
    });
    const answer = result as { isError?: boolean; structuredContent?: { run_id?: unknown; replayed?: unknown } };
    if (
      answer.isError === true ||
      typeof answer.structuredContent?.run_id !== 'string' ||
      answer.structuredContent.replayed !== false
    ) {
      throw new Error(`bench: a fresh create did not make a new run: ${JSON.stringify(result)}`);
    }
  }

  private headers(): Record<string, string> {
    return this.id === '' ? {} : { 'mcp-session-id': this.id, 'mcp-protocol-version': '2025-06-18' };
  }

  private async request(method: string, params: unknown): Promise<{ result: unknown; sessionId: string | undefined }> {
    const id = this.nextId++;
    const res = await post(this.agent, this.url, this.headers(), { jsonrpc: '2.0', id, method, params });
    const sse = (res.headers['content-type'] ?? '').startsWith('text/event-stream');
    const messages = sse
      ? res.text
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => JSON.parse(line.slice(5)) as { id?: unknown; result?: unknown; error?: unknown })
      : [JSON.parse(res.text) as { id?: unknown; result?: unknown; error?: unknown }];
    const answer = messages.find((m) => m.id === id);
    if (res.status !== 200 || answer === undefined || answer.result === undefined) {
      throw new Error(`bench: ${method} answered ${res.status}: ${res.text.slice(0, 500)}`);
    }
    const sessionId = res.headers['mcp-session-id'];
    return { result: answer.result, sessionId: typeof sessionId === 'string' ? sessionId : undefined };
  }
}

interface Replica {
  child: Child;
  pid: number;
  cap: CpuCap;
  url: URL;
  agent: http.Agent;
  /** Its PostgreSQL connections carry this application_name, so their backends can be found. */
  appName: string;
}

/** The whole machine's CPU seconds so far, busy and total, over all cores (from /proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: (total - ticks[3]! - ticks[4]!) / 100, total: total / 100 };
}

interface Side {
  name: string;
  sessions: LightSession[];
  replicas: Replica[];
  rates: number[];
  /** Per round: each of the side's replicas' CPU in cores, and the share of its periods that were throttled. */
  replicaCores: number[][];
  throttled: number[][];
  clientCores: number[];
  postgresCores: number[];
  machineCores: number[];
}

/** Every session loops fresh creates until `ms` have passed; when recording, adds the round's rate and every party's CPU. */
async function drive(side: Side, ms: number, record: boolean, backends: () => Promise<number[]>): Promise<void> {
  const pgPids = record ? await backends() : [];
  const sum = (values: (number | undefined)[]) => values.reduce<number>((a, b) => a + (b ?? 0), 0);
  const replica0 = side.replicas.map((r) => cpuSeconds(r.pid) ?? 0);
  const periods0 = side.replicas.map((r) => r.cap.periods());
  const postgres0 = pgPids.map(cpuSeconds);
  const machine0 = machineCpu();
  const client0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let calls = 0;
  // The first failure stops every session after its call in flight, so none is left running.
  let failure: { error: unknown } | undefined;
  await Promise.all(
    side.sessions.map(async (session) => {
      try {
        while (failure === undefined && process.hrtime.bigint() < deadline) {
          await session.create();
          calls++;
        }
      } catch (error) {
        failure ??= { error };
      }
    }),
  );
  if (failure !== undefined) throw failure.error;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (!record) return;
  const client = process.cpuUsage(client0);
  const machine = machineCpu();
  side.rates.push(calls / seconds);
  side.replicaCores.push(side.replicas.map((r, i) => ((cpuSeconds(r.pid) ?? 0) - replica0[i]!) / seconds));
  side.throttled.push(
    side.replicas.map((r, i) => {
      const now = r.cap.periods();
      return (now.throttled - periods0[i]!.throttled) / Math.max(1, now.all - periods0[i]!.all);
    }),
  );
  side.clientCores.push((client.user + client.system) / 1e6 / seconds);
  // A backend that ended during the round is left out; the pool keeps its connections while busy.
  side.postgresCores.push(
    sum(
      pgPids.map((pid, i) =>
        postgres0[i] === undefined ? undefined : (cpuSeconds(pid) ?? postgres0[i]!) - postgres0[i]!,
      ),
    ) / seconds,
  );
  side.machineCores.push(((machine.busy - machine0.busy) / (machine.total - machine0.total)) * machineCores());
}

const machineCores = () =>
  readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d/.test(line)).length;

export async function benchReplicas(): Promise<ReplicaBench> {
  const unavailable = quotaUnavailable();
  if (unavailable !== undefined) return { skipped: unavailable };
  removeStaleCaps();
  const schema = `bench_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const caps: CpuCap[] = [];
  const replicas: Replica[] = [];
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    try {
      for (let i = 0; i < REPLICAS; i++) caps.push(new CpuCap(`runledger-bench-${process.pid}-${i}`));
    } catch (err) {
      return { skipped: `the CPU quota could not be set under ${CPU_ROOT}: ${(err as Error).message}` };
    }
    const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
    // Serve only (--concurrency 0): no rendering shares the cores, so the rates are the fence's.
    const flags = [
      '--http',
      '--port',
      '0',
      '--db',
      PG_URL,
      '--db-schema',
      schema,
      '--concurrency',
      '0',
      '--log-level',
      'info',
    ];
    const ready = /serving MCP over Streamable HTTP \{"url":"(http:\/\/127\.0\.0\.1:\d+\/mcp)"/;
    for (const [i, cap] of caps.entries()) {
      const appName = `runledger-bench-${process.pid}-${i}`;
      // Started one after another: the first creates the schema, and each starts at 0.15 core anyway.
      const { child, match } = await start([cli, ...flags], ready, {
        env: { ...process.env, PGAPPNAME: appName },
        onSpawn: (pid) => cap.add(pid),
        timeoutMs: START_TIMEOUT_MS,
      });
      replicas.push({
        child,
        pid: child.process.pid!,
        cap,
        url: new URL(match[1]!),
        agent: new http.Agent({ keepAlive: true }),
        appName,
      });
    }
    const sessions = async (on: Replica[]) => {
      // Round-robin, as a load balancer spreads new sessions.
      const opened = Array.from(
        { length: CLIENTS },
        (_, i) => new LightSession(on[i % on.length]!.agent, on[i % on.length]!.url),
      );
      await Promise.all(opened.map((s) => s.open()));
      return opened;
    };
    const side = async (name: string, on: Replica[]): Promise<Side> => ({
      name,
      sessions: await sessions(on),
      replicas: on,
      rates: [],
      replicaCores: [],
      throttled: [],
      clientCores: [],
      postgresCores: [],
      machineCores: [],
    });
    const one = await side('one replica', replicas.slice(0, 1));
    const three = await side('three replicas', replicas);
    const backends = async () =>
      (
        await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1)', [
          replicas.map((r) => r.appName),
        ])
      ).rows.map((r) => r.pid);

    await drive(three, WARMUP_THREE_MS, false, backends);
    await drive(one, WARMUP_ONE_MS, false, backends);
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved, each round starting with the other side, so drift in the machine's load falls on both.
      for (const s of round % 2 === 0 ? [one, three] : [three, one]) await drive(s, ROUND_MS, true, backends);
    }
    return { rows: [report(one, three)] };
  } finally {
    await Promise.allSettled(replicas.map((r) => stop(r.child)));
    for (const r of replicas) r.agent.destroy();
    // Removed even when something above failed; a replica that would not stop keeps its group busy, and that is reported.
    const removed = await Promise.allSettled(caps.map((cap) => cap.remove()));
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
    for (const r of removed)
      if (r.status === 'rejected') process.stderr.write(`bench: a cgroup was left behind: ${String(r.reason)}\n`);
  }
}

function report(one: Side, three: Side): Comparison {
  const quota = QUOTA_US / PERIOD_US;
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const perSec = (rates: number[]) => rates.map((r) => Math.round(r).toLocaleString('en-US')).join(', ');
  const cores = (values: number[]) => median(values).toFixed(2);
  const pct = (values: number[]) => `${Math.round(100 * median(values))}%`;
  const parties = (s: Side) => {
    const each = s.replicas.map((_, i) => cores(s.replicaCores.map((round) => round[i]!))).join(' / ');
    const throttled = s.replicas.map((_, i) => pct(s.throttled.map((round) => round[i]!))).join(' / ');
    const perCreate = median(s.replicaCores.map((round, r) => (sum(round) / s.rates[r]!) * 1e6));
    const rest = s.machineCores.map((m, r) => m - sum(s.replicaCores[r]!) - s.clientCores[r]! - s.postgresCores[r]!);
    return (
      `${s.name}: replica CPU ${each} cores, throttled in ${throttled} of periods, ${Math.round(perCreate)} µs a create; ` +
      `clients (this process, one thread) ${cores(s.clientCores)} cores; the replicas' PostgreSQL backends ${cores(s.postgresCores)}; ` +
      `everything else on the machine ${cores(rest)} (${cores(s.machineCores)} of ${machineCores()} cores busy)`
    );
  };
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  return {
    operation: `fresh creates over HTTP, ${CLIENTS} light sessions over ${REPLICAS} replicas capped at ${quota} core each, one PostgreSQL`,
    measured: median(three.rates),
    baselineLabel: `the same ${CLIENTS} sessions on 1 replica capped alike`,
    baseline: median(one.rates),
    ratio: median(three.rates) / median(one.rates),
    target: TARGET,
    unit: 'creates/s',
    note:
      `Rounds (creates/s): three replicas ${perSec(three.rates)}; one replica ${perSec(one.rates)}. ` +
      `Medians of the rounds, each replica capped at ${quota} core (cgroup v1 cpu.cfs_quota_us ${QUOTA_US} per ${PERIOD_US} µs); load average ${load} at the end:\n` +
      `- ${parties(one)};\n- ${parties(three)}.`,
  };
}
