// The window between a job provider's answer to a submit and storing the job's handle, crossed by a
// real SIGKILL (the "submitted" failpoint): the restarted server finds the job it submitted — through a
// webhook that named the run, or the list endpoint — and never submits again; a job it cannot find ends
// the run outcome_unknown, unbilled, after the bound.
import { randomUUID } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeReplicate, type FakeProvider } from '../fixtures/jobs/fake-providers.js';
import { connectHttp, killAll, startHttp } from '../helpers/http.js';
import { definitionFor, freePort, providerEnv, VIDEO } from '../helpers/jobs.js';
import { callTool, readLedger, runEnded, startStdio, tempDb, until, type StdioServer } from '../helpers/mcp.js';

const servers: StdioServer[] = [];
const clients: Client[] = [];
const fakes: FakeProvider[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
  await killAll();
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

const FLAGS = [
  '--provider-for',
  'product_video=replicate',
  '--lease-ms',
  '2000',
  '--concurrency',
  '1',
  '--log-level',
  'info',
];

async function replicate(opts: Parameters<typeof startFakeReplicate>[0] = {}) {
  const fake = await startFakeReplicate(opts);
  fakes.push(fake);
  return fake;
}

async function stdio(
  db: string,
  definition: string,
  fake: FakeProvider & { webhookSecret: string },
  flags: string[] = [],
  env: Record<string, string> = {},
) {
  const server = await startStdio(db, ['--provider-file', definition, ...FLAGS, ...flags], {
    env: { ...providerEnv('replicate', fake), ...env },
    captureStderr: true,
  });
  servers.push(server);
  return server;
}

const died = (server: StdioServer) => new Promise<void>((resolve) => (server.client.onclose = () => resolve()));

/** A create whose server is killed the moment the provider has answered its submit, before the handle is stored: its key. */
async function killedAfterSubmit(
  db: string,
  definition: string,
  fake: FakeProvider & { webhookSecret: string },
  flags: string[] = [],
): Promise<string> {
  const doomed = await stdio(db, definition, fake, flags, { RUNLEDGER_FAILPOINTS: 'submitted=product_video' });
  const gone = died(doomed);
  const key = randomUUID();
  await callTool(doomed.client, 'create_product_video', { ...VIDEO, idempotency_key: key }).catch(() => undefined);
  await gone;
  return key;
}

/** What the dead server left: no handle, and "submitting" among the recovery points. */
function leftBehind(db: string, runId: string): { job: number; submitting: boolean } {
  const file = new Database(db, { readonly: true });
  try {
    const job = file.prepare<[string], number>('SELECT count(*) FROM run_jobs WHERE run_id = ?').pluck().get(runId)!;
    const recovery = file
      .prepare<[string], string | null>('SELECT recovery FROM run_data WHERE run_id = ?')
      .pluck()
      .get(runId);
    return { job, submitting: recovery != null && 'job/submitting' in (JSON.parse(recovery) as object) };
  } finally {
    file.close();
  }
}

/** Waits for a line in the server's log: its stderr reaches this process after what it did in the ledger. */
const logged = (server: { stderr(): string }, line: RegExp) =>
  until(async () => (line.test(server.stderr()) ? true : undefined), `the server to log ${line.source}`);

describe('a crash between the submit and storing its answer', () => {
  it('adopts the orphan through the list endpoint (matched by input and time) and never submits again', async () => {
    const fake = await replicate();
    const db = tempDb();
    // No webhooks: the list is the only way back to the job.
    const definition = definitionFor('replicate', fake, { submit: { webhook: null }, webhook: null });
    const key = await killedAfterSubmit(db, definition, fake);
    const job = await fake.waitForJob();
    const run = await readLedger(db, (l) => l.findRun('local', 'product_video', key));
    expect(leftBehind(db, run.id)).toEqual({ job: 0, submitting: true });

    const server = await stdio(db, definition, fake);
    await until(
      async () => ((await readLedger(db, (l) => l.jobOf(run.id)))?.jobId === job.id ? true : undefined),
      'the orphan to be adopted',
    );
    await logged(
      server,
      /adopted the orphaned job: no second submit \{"run_id":"[^"]+","job_id":"[0-9a-f]+","found_by":"input_and_time"\}/,
    );
    expect(fake.stats.lists).toBeGreaterThanOrEqual(1);
    fake.run(job.id);
    fake.finish(job.id, 'succeeded');
    const done = await runEnded(server.client, run.id);
    expect(done.run).toMatchObject({
      phase: 'done',
      billed: true,
      attempts: 2,
      assets: [expect.objectContaining({ mime: 'video/mp4' })],
    });
    expect(fake.stats.submits).toBe(1);
    expect(await readLedger(db, (l) => l.usage('local'))).toMatchObject({ runs: 1, charges: 1, credits: 10 });
  });

  it('adopts the orphan through the webhook that names the run, delivered to the restarted server, and never submits again', async () => {
    const fake = await replicate();
    const db = tempDb();
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    // No list endpoint: the webhook is the only way back to the job.
    const definition = definitionFor('replicate', fake, { list: null });
    const flags = ['--port', String(port), '--public-url', origin, '--provider-file', definition, ...FLAGS];
    const doomed = await startHttp(db, flags, {
      ...providerEnv('replicate', fake),
      RUNLEDGER_FAILPOINTS: 'submitted=product_video',
    });
    const client = await connectHttp(doomed.url);
    const key = randomUUID();
    await callTool(client, 'create_product_video', { ...VIDEO, idempotency_key: key }).catch(() => undefined);
    await doomed.exited;
    void client.close().catch(() => undefined);
    const job = await fake.waitForJob();
    expect(job.webhook).toMatch(new RegExp(`^${origin}/webhooks/replicate\\?run=run_`));
    const run = await readLedger(db, (l) => l.findRun('local', 'product_video', key));
    expect(job.webhook).toBe(`${origin}/webhooks/replicate?run=${run.id}`);
    expect(leftBehind(db, run.id)).toEqual({ job: 0, submitting: true });

    const server = await startHttp(db, flags, providerEnv('replicate', fake));
    // The job starts: its webhook goes to the URL that names the run, now served by the new server.
    fake.run(job.id);
    await until(
      async () => ((await readLedger(db, (l) => l.jobOf(run.id)))?.jobId === job.id ? true : undefined),
      'the orphan to be adopted',
    );
    await logged(
      server,
      /adopted the orphaned job: no second submit \{"run_id":"[^"]+","job_id":"[0-9a-f]+","found_by":"webhook"\}/,
    );
    fake.finish(job.id, 'succeeded');
    const again = await connectHttp(server.url);
    clients.push(again);
    const done = await runEnded(again, run.id);
    expect(done.run).toMatchObject({ phase: 'done', billed: true, attempts: 2 });
    expect(fake.stats.submits).toBe(1);
    expect(fake.stats.webhooks.some((w) => w.event === 'start' && w.status === 200)).toBe(true);
  });

  it('ends outcome_unknown, unbilled and naming what to check, when the orphan is never found within the bound', async () => {
    const fake = await replicate();
    fake.hideNewJobs = true;
    const db = tempDb();
    const definition = definitionFor('replicate', fake, { submit: { webhook: null }, webhook: null });
    const key = await killedAfterSubmit(db, definition, fake, ['--orphan-search-ms', '3000']);
    await fake.waitForJob();

    const server = await stdio(db, definition, fake, ['--orphan-search-ms', '3000']);
    const found = await callTool(server.client, 'poll_run', { idempotency_key: key, tool: 'product_video' });
    const failed = await runEnded(server.client, found.run.run_id);
    expect(failed.run).toMatchObject({ phase: 'failed', billed: false, error: { code: 'outcome_unknown' } });
    expect(failed.run.error!.message).toMatch(
      /submitted to replicate at .*, but the server stopped before it stored the job's id.*not submitted again/,
    );
    expect(failed.run.error!.details).toMatchObject({
      provider: 'replicate',
      searched_by: ['the list endpoint'],
      candidates: [],
    });
    expect(failed.result.isError).toBe(true);
    expect(fake.stats.submits).toBe(1);
    expect(fake.stats.lists).toBeGreaterThanOrEqual(2);
    // The same key keeps answering the same outcome; nothing new is submitted.
    const retry = await callTool(server.client, 'create_product_video', { ...VIDEO, idempotency_key: key });
    expect(retry.run).toMatchObject({
      run_id: found.run.run_id,
      phase: 'failed',
      replayed: true,
      error: { code: 'outcome_unknown' },
    });
    expect(fake.stats.submits).toBe(1);
    expect(await readLedger(db, (l) => l.usage('local'))).toMatchObject({ runs: 1, charges: 0 });
  });

  it('sends the submit again with the run id as its key when the definition says the provider honours keys, and pays for one job', async () => {
    const fake = await replicate({ honourKeys: true });
    const db = tempDb();
    const definition = definitionFor('replicate', fake, {
      submit: { webhook: null },
      webhook: null,
      list: null,
      idempotency: { honoured: true },
    });
    const key = await killedAfterSubmit(db, definition, fake);
    const job = await fake.waitForJob();
    const run = await readLedger(db, (l) => l.findRun('local', 'product_video', key));

    const server = await stdio(db, definition, fake);
    await until(
      async () => ((await readLedger(db, (l) => l.jobOf(run.id)))?.jobId === job.id ? true : undefined),
      'the same job to come back',
    );
    await logged(server, /sending it again with the same key, which the provider honours/);
    expect(fake.stats.submitKeys).toEqual([run.id, run.id]);
    fake.finish(job.id, 'succeeded');
    expect((await runEnded(server.client, run.id)).run).toMatchObject({ phase: 'done', billed: true });
    expect(fake.stats.submits).toBe(1);
  });
});
