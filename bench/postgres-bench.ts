// The PostgreSQL ledger beside its baselines, all measured in the same run:
// - fresh and replayed creates through the ledger, beside the same statements sent raw through `pg`
//   (and, for context, beside the SQLite ledger);
// - 64 concurrent HTTP client sessions creating fresh runs against one replica, and against three
//   replicas sharing the database.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import pg from 'pg';
import { catalogue } from '../tools/index.js';
import { fingerprint, type CreateRequest, type JsonObject, type RunLedger } from '../src/ledger/index.js';
import { MIGRATIONS } from '../src/ledger/migrations.js';
import { openPostgresLedger } from '../src/ledger/postgres/store.js';
import { KEYED_COLUMNS } from '../src/ledger/sql.js';
import { newRecord } from '../src/ledger/rules.js';
import { openSqliteLedger } from '../src/ledger/sqlite/store.js';
import { connect, drive, start, stop, type Child, type Side } from './http-bench.js';
import { BENCH_REQUEST, median, opsPerSecond, type Comparison } from './measure.js';

const PG_URL = process.env.RUNLEDGER_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const ROUNDS = 5;
const WRITES_PER_ROUND = 300;
const READS_PER_ROUND = 3000;
const CLIENTS = 64;
const REPLICAS = 3;
const ROUND_MS = 3000;
const WARMUP_MS = 2000;

const productShot = catalogue.find((t) => t.name === 'product_shot')!;
const ARGS = productShot.input.parse(BENCH_REQUEST) as JsonObject;
const FP = fingerprint(ARGS);
const request = (key: string): CreateRequest => ({ tenant: 'bench', tool: 'product_shot', idempotencyKey: key, args: ARGS, fingerprint: FP, cost: 8 });

/** Whether PostgreSQL answers; the section is skipped, saying so, when it does not. */
export async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function withSchema<T>(body: (schema: string) => Promise<T>): Promise<T> {
  const schema = `bench_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  try {
    return await body(schema);
  } finally {
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
}

/** The ledger's statements for a create and a replay, sent raw on a pool of the same size. */
async function rawStatements(schema: string) {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 10, options: `-c search_path=${schema}` });
  await pool.query(`CREATE SCHEMA ${schema}; SET search_path = ${schema}; ${MIGRATIONS.map((m) => m.postgres).join('\n')}`);
  return {
    insert: async (key: string) => {
      const run = newRecord(request(key), FP, Date.now(), 30_000);
      await pool.query(
        `INSERT INTO runs (id, tenant, executor, tool, idem_key, fingerprint, cost, args, phase, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (tenant, executor, tool, idem_key) DO NOTHING`,
        [run.id, run.tenant, run.executor, run.tool, run.idempotencyKey, FP, run.cost, JSON.stringify(ARGS), run.phase, run.createdAt, run.updatedAt],
      );
    },
    lookup: (key: string) =>
      pool.query(`SELECT ${KEYED_COLUMNS} FROM runs WHERE tenant = $1 AND executor = $2 AND tool = $3 AND idem_key = $4`, ['bench', 'engine', 'product_shot', key]),
    close: () => pool.end(),
  };
}

async function ledgerRates(): Promise<Comparison[]> {
  return withSchema(async (schema) =>
    withSchema(async (rawSchema) => {
      const dir = mkdtempSync(join(tmpdir(), 'runledger-bench-pg-'));
      const raw = await rawStatements(rawSchema);
      const ledger = await openPostgresLedger({ url: PG_URL, schema });
      const sqlite = await openSqliteLedger({ path: join(dir, 'ledger.db') });
      const rates = { rawInsert: [] as number[], create: [] as number[], sqliteCreate: [] as number[], rawLookup: [] as number[], replay: [] as number[], sqliteReplay: [] as number[] };
      const creates = (target: RunLedger, keys: string[]) => opsPerSecond(keys.length, (i) => target.createOrReplay(request(keys[i]!)));
      const replays = (target: RunLedger, keys: string[]) => opsPerSecond(READS_PER_ROUND, (i) => target.createOrReplay(request(keys[i % keys.length]!)));
      try {
        for (let round = 0; round < ROUNDS; round++) {
          // Interleaved rounds, so drift in the machine's load falls on every side alike.
          const keys = () => Array.from({ length: WRITES_PER_ROUND }, () => randomUUID());
          const [rawKeys, pgKeys, sqliteKeys] = [keys(), keys(), keys()];
          rates.rawInsert.push(await opsPerSecond(rawKeys.length, (i) => raw.insert(rawKeys[i]!)));
          rates.create.push(await creates(ledger, pgKeys));
          rates.sqliteCreate.push(await creates(sqlite, sqliteKeys));
          rates.rawLookup.push(await opsPerSecond(READS_PER_ROUND, (i) => raw.lookup(rawKeys[i % rawKeys.length]!)));
          rates.replay.push(await replays(ledger, pgKeys));
          rates.sqliteReplay.push(await replays(sqlite, sqliteKeys));
        }
      } finally {
        await raw.close();
        await ledger.close();
        await sqlite.close();
        rmSync(dir, { recursive: true, force: true });
      }
      const perSec = (n: number) => `${Math.round(n).toLocaleString('en-US')} ops/s`;
      const row = (operation: string, measured: number[], baselineLabel: string, baseline: number[], note: string): Comparison => ({
        operation,
        measured: median(measured),
        baselineLabel,
        baseline: median(baseline),
        ratio: median(measured) / median(baseline),
        target: 0.7,
        unit: 'ops/s',
        note,
      });
      return [
        row('fresh create, PostgreSQL ledger (one at a time)', rates.create, 'the same INSERT raw through pg', rates.rawInsert, `The SQLite ledger on this disk: ${perSec(median(rates.sqliteCreate))}.`),
        row(
          'replay, PostgreSQL ledger (one at a time)',
          rates.replay,
          'the same point lookup raw through pg',
          rates.rawLookup,
          `The SQLite ledger: ${perSec(median(rates.sqliteReplay))} (in process, no round trip).`,
        ),
      ];
    }),
  );
}

/** The whole machine's CPU time so far, busy and total, in clock ticks (from /proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

async function replicaRates(): Promise<Comparison> {
  return withSchema(async (schema) => {
    const children: Child[] = [];
    const clients: Client[] = [];
    try {
      const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
      // Serve only: no rendering shares the cores, so the rates are the fence's.
      const flags = ['--http', '--port', '0', '--db', PG_URL, '--db-schema', schema, '--concurrency', '0', '--log-level', 'info'];
      const ready = /serving MCP over Streamable HTTP \{"url":"(http:\/\/127\.0\.0\.1:\d+\/mcp)"/;
      const urls: string[] = [];
      for (let i = 0; i < REPLICAS; i++) {
        const replica = await start([cli, ...flags], ready);
        children.push(replica.child);
        urls.push(replica.match[1]!);
      }
      // One replica takes all the sessions; three share them, as a load balancer would spread them.
      const single = await connect(urls[0]!, CLIENTS, clients);
      const spread = (await Promise.all(urls.map((url, i) => connect(url, Math.floor(CLIENTS / REPLICAS) + (i < CLIENTS % REPLICAS ? 1 : 0), clients)))).flat();
      const fresh = async (client: Client) => {
        const result = (await client.callTool({ name: 'create_product_shot', arguments: { ...BENCH_REQUEST, idempotency_key: randomUUID() } })) as CallToolResult;
        if (result.isError || (result.structuredContent as { replayed?: boolean }).replayed !== false) {
          throw new Error(`bench: a fresh create failed: ${JSON.stringify(result.structuredContent ?? result.content)}`);
        }
      };
      const side = (name: string, sessions: Client[]): Side => ({ name, clients: sessions, op: fresh, pid: undefined, rates: [], calls: 0, serverCpu: 0, clientCpu: 0 });
      const one = side('one replica', single);
      const three = side('three replicas', spread);
      for (const s of [one, three]) await drive(s, WARMUP_MS, false);
      // How busy the machine's cores were on each side: replicas add throughput only where cores are idle.
      const busy = new Map<Side, { busy: number; total: number }>([
        [one, { busy: 0, total: 0 }],
        [three, { busy: 0, total: 0 }],
      ]);
      for (let round = 0; round < ROUNDS; round++) {
        for (const s of round % 2 === 0 ? [one, three] : [three, one]) {
          const before = machineCpu();
          await drive(s, ROUND_MS, true);
          const after = machineCpu();
          const acc = busy.get(s)!;
          acc.busy += after.busy - before.busy;
          acc.total += after.total - before.total;
        }
      }
      const load = (s: Side) => `${Math.round((100 * busy.get(s)!.busy) / Math.max(1, busy.get(s)!.total))}%`;
      const perSec = (rates: number[]) => rates.map((r) => Math.round(r).toLocaleString('en-US')).join(', ');
      return {
        operation: `fresh creates over HTTP, ${CLIENTS} sessions over ${REPLICAS} replicas on one PostgreSQL`,
        measured: median(three.rates),
        baselineLabel: `the same ${CLIENTS} sessions on one replica`,
        baseline: median(one.rates),
        ratio: median(three.rates) / median(one.rates),
        target: 1.8,
        unit: 'calls/s',
        note:
          `Rounds (calls/s): three replicas ${perSec(three.rates)}; one replica ${perSec(one.rates)}. ` +
          `The clients, every replica and PostgreSQL share this machine's cores, which were ${load(one)} busy with one replica ` +
          `and ${load(three)} with three.`,
      };
    } finally {
      await Promise.allSettled(clients.map((c) => c.close()));
      await Promise.allSettled(children.map(stop));
    }
  });
}

export async function benchPostgres(): Promise<Comparison[]> {
  return [...(await ledgerRates()), await replicaRates()];
}
