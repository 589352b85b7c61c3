// Several replicas on one PostgreSQL database, as a team deploys runledger behind a load balancer: the
// built CLI over real HTTP, and the database itself going away and coming back.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { holderPid, openLedger } from '../../src/ledger/index.js';
import { connectHttp, killAll, startHttp, type HttpProcess } from '../helpers/http.js';
import { freshSchema, PG_URL, postgresAvailable } from '../helpers/ledgers.js';
import { callTool, PRODUCT_SHOT, startStdio, until, type StdioServer } from '../helpers/mcp.js';

const clients: Client[] = [];
const stdioServers: StdioServer[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await Promise.all(stdioServers.splice(0).map((s) => s.close().catch(() => undefined)));
  await killAll();
});

async function connect(url: string): Promise<Client> {
  const client = await connectHttp(url);
  clients.push(client);
  return client;
}

async function admin<T>(url: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

async function read<T>(
  url: string,
  schema: string,
  body: (ledger: Awaited<ReturnType<typeof openLedger>>) => Promise<T>,
): Promise<T> {
  const ledger = await openLedger({ url, schema, poolSize: 2 });
  try {
    return await body(ledger);
  } finally {
    await ledger.close();
  }
}

describe.skipIf(!(await postgresAvailable()))('replicas on PostgreSQL', () => {
  it('makes one run and one charge from 300 concurrent identical creates spread over three replicas', async () => {
    const schema = freshSchema();
    const replicas = await Promise.all(
      [0, 1, 2].map(() => startHttp(PG_URL, ['--db-schema', schema, '--concurrency', '1', '--db-pool-size', '4'])),
    );
    const sessions = await Promise.all(replicas.map((r) => connect(r.url)));
    const key = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        callTool(sessions[i % 3]!, 'create_social_card', { headline: 'Three replicas', idempotency_key: key }),
      ),
    );
    expect(answers.filter((a) => a.result.isError)).toEqual([]);
    const ids = new Set(answers.map((a) => a.run.run_id));
    expect(ids.size).toBe(1);
    expect(answers.filter((a) => !a.run.replayed)).toHaveLength(1);
    const [runId] = [...ids];
    const done = await callTool(sessions[1]!, 'poll_run', { run_id: runId, wait_seconds: 50 });
    expect(done.run).toMatchObject({ phase: 'done', billed: true });
    // Replay counts are written by each replica within a second of the replays.
    const usage = await until(async () => {
      const now = await read(PG_URL, schema, (ledger) => ledger.usage('local'));
      return now.replaysAbsorbed === 299 ? now : undefined;
    }, 'every replica to write its replay counts');
    expect(usage).toMatchObject({ runs: 1, charges: 1 });
  });

  it('resumes a run on another replica when the one holding its lease is SIGKILLed, billed once', async () => {
    const schema = freshSchema();
    const flags = [
      '--db-schema',
      schema,
      '--concurrency',
      '1',
      '--lease-ms',
      '1000',
      '--phase-delay-ms',
      '400',
      '--db-pool-size',
      '4',
    ];
    const replicas: HttpProcess[] = await Promise.all([0, 1, 2].map(() => startHttp(PG_URL, flags)));
    const sessions = await Promise.all(replicas.map((r) => connect(r.url)));
    const created = await callTool(sessions[0]!, 'create_product_shot', {
      ...PRODUCT_SHOT,
      idempotency_key: randomUUID(),
    });
    const runId = created.run.run_id;
    // The replica holding the lease, once the run has made progress in rendering.
    const holder = await until(async () => {
      const row = await admin(
        PG_URL,
        async (c) => (await c.query(`SELECT lease_owner, phase FROM ${schema}.runs WHERE id = $1`, [runId])).rows[0],
      );
      if (row?.phase !== 'rendering' || typeof row.lease_owner !== 'string') return undefined;
      const pid = holderPid(String(row.lease_owner));
      return replicas.find((r) => r.child.pid === pid);
    }, 'a replica to be rendering the run');
    holder.child.kill('SIGKILL');
    await holder.exited;
    const survivor = sessions[replicas.indexOf(holder) === 0 ? 1 : 0]!;
    const done = await until(
      async () => {
        const polled = await callTool(survivor, 'poll_run', { run_id: runId, wait_seconds: 50 });
        return polled.run.phase === 'done' ? polled : undefined;
      },
      'another replica to finish the run',
      120_000,
    );
    expect(done.run.attempts).toBeGreaterThanOrEqual(2);
    expect(done.run.phases.map((p) => p.phase)).toEqual(['queued', 'composing', 'rendering', 'done']);
    expect(await read(PG_URL, schema, (ledger) => ledger.usage('local'))).toMatchObject({ runs: 1, charges: 1 });
  });

  it('answers storage_unavailable while the database is gone, loses and duplicates nothing, and recovers without a restart', async () => {
    // A database of its own: refusing connections to it disturbs no other test.
    const database = `rl_outage_${randomBytes(6).toString('hex')}`;
    await admin(PG_URL, (c) => c.query(`CREATE DATABASE ${database}`));
    const url = Object.assign(new URL(PG_URL), { pathname: `/${database}` }).toString();
    const allow = (yes: boolean) =>
      admin(PG_URL, async (c) => {
        await c.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS ${yes}`);
        if (!yes)
          await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [database]);
      });
    try {
      const server = await startStdio(url, ['--concurrency', '1', '--db-pool-size', '4']);
      stdioServers.push(server);
      const acknowledged = new Map<string, string>();
      const refused: string[] = [];
      let sent = 0;
      const send = (key: string) =>
        callTool(server.client, 'create_social_card', { headline: `Outage ${key.slice(0, 16)}`, idempotency_key: key });
      const create = async () => {
        const key = `outage-key-${String(sent++).padStart(5, '0')}-${randomUUID()}`;
        const answer = await send(key);
        if (!answer.result.isError) acknowledged.set(key, answer.run.run_id);
        else {
          expect(answer.error?.code).toBe('storage_unavailable');
          refused.push(key);
        }
      };
      // A few runs on each side of the outage show all it has to: every run renders at --concurrency 1
      // (~250 ms each here), and 35 of them took 9 s of the suite to say the same.
      for (let i = 0; i < 6; i++) await create();
      await allow(false);
      await until(async () => {
        await create();
        return refused.length >= 5 ? true : undefined;
      }, 'creates to be refused while the database is gone');
      await allow(true);
      const before = acknowledged.size;
      await until(async () => {
        await create();
        return acknowledged.size >= before + 4 ? true : undefined;
      }, 'creates to succeed again without a restart');
      // The refused creates, retried with their own keys, now go through: nothing was half-written.
      for (const key of refused) {
        const retry = await send(key);
        expect(retry.result.isError).toBeFalsy();
        acknowledged.set(key, retry.run.run_id);
      }
      await read(url, 'runledger', async (ledger) => {
        const stored = new Map<string, string>();
        for (
          let cursor: string | undefined, page;
          (page = await ledger.listRuns('local', { limit: 100, ...(cursor ? { cursor } : {}) }));
        ) {
          for (const run of page.runs) {
            expect(stored.has(run.idempotencyKey)).toBe(false);
            stored.set(run.idempotencyKey, run.id);
          }
          if (page.nextCursor === null) break;
          cursor = page.nextCursor;
        }
        for (const [key, runId] of acknowledged) expect(stored.get(key)).toBe(runId);
        expect(stored.size).toBe(acknowledged.size);
      });
      // And the work goes on: every run, some queued while the database was gone, finishes.
      for (const runId of acknowledged.values()) {
        const polled = await callTool(server.client, 'poll_run', { run_id: runId, wait_seconds: 50 });
        expect(polled.run.phase).toBe('done');
      }
    } finally {
      await Promise.all(stdioServers.splice(0).map((s) => s.close().catch(() => undefined)));
      await allow(true).catch(() => undefined);
      await admin(PG_URL, (c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
    }
  });
});
