// Job providers (queue APIs without idempotency keys) behind the built CLI, against fake Replicate-style
// and fal-style servers on loopback that count every submit: one create is one submit, however often
// it is sent, and wherever a crash lands; outputs are kept before their URLs expire.
import { createHash, randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeFal, startFakeReplicate, type FakeProvider } from '../fixtures/jobs/fake-providers.js';
import { definitionFor, providerEnv, VIDEO } from '../helpers/jobs.js';
import {
  callTool,
  PRODUCT_SHOT,
  readLedger,
  runEnded,
  startStdio,
  tempDb,
  until,
  type StdioServer,
} from '../helpers/mcp.js';

const servers: StdioServer[] = [];
const fakes: FakeProvider[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

type Kind = 'replicate' | 'fal';

async function fake(kind: Kind) {
  const provider = kind === 'replicate' ? await startFakeReplicate() : await startFakeFal();
  fakes.push(provider);
  return provider;
}

async function serve(
  db: string,
  kind: Kind,
  provider: FakeProvider,
  flags: string[] = [],
  over: Record<string, unknown> = {},
  env: Record<string, string> = {},
) {
  const server = await startStdio(
    db,
    [
      '--provider-file',
      definitionFor(kind, provider, over),
      '--provider-for',
      `product_video=${kind}`,
      '--lease-ms',
      '2000',
      ...flags,
    ],
    { env: { ...providerEnv(kind, provider), ...env }, captureStderr: true },
  );
  servers.push(server);
  return server;
}

/** Rows of a table in the server's ledger file, read beside it. */
function count(db: string, sql: string): number {
  const file = new Database(db, { readonly: true });
  try {
    return file.prepare<[], number>(sql).pluck().get()!;
  } finally {
    file.close();
  }
}

describe.each(['replicate', 'fal'] as const)('a %s-style job provider', (kind) => {
  it('submits once for one create, 50 concurrent and 50 sequential duplicates, stores the handle, keeps the output and bills once', async () => {
    const provider = await fake(kind);
    const db = tempDb();
    const server = await serve(db, kind, provider);
    expect((await server.client.listTools()).tools.map((t) => t.name)).toContain('create_product_video');

    // The still comes from a product shot run of the same tenant, sent as a data: URI.
    const shot = await callTool(server.client, 'create_product_shot', {
      ...PRODUCT_SHOT,
      variants: 1,
      idempotency_key: randomUUID(),
      wait_seconds: 50,
    });
    expect(shot.run.phase).toBe('done');
    const key = randomUUID();
    const args = { ...VIDEO, product_shot: { run_id: shot.run.run_id }, idempotency_key: key };
    const first = await callTool(server.client, 'create_product_video', args);
    const runId = first.run.run_id;
    const burst = await Promise.all(
      Array.from({ length: 50 }, () => callTool(server.client, 'create_product_video', args)),
    );
    const sequential = [];
    for (let i = 0; i < 50; i++) sequential.push(await callTool(server.client, 'create_product_video', args));
    expect(new Set([...burst, ...sequential].map((a) => a.run.run_id))).toEqual(new Set([runId]));
    expect([...burst, ...sequential].every((a) => a.run.replayed)).toBe(true);

    const job = await provider.waitForJob();
    const image = kind === 'replicate' ? job.input.image : job.input.image_url;
    expect(image).toMatch(/^data:image\/png;base64,/);
    expect(job.input).toMatchObject({
      prompt: expect.stringContaining('Cold Brew No. 7'),
      ...(kind === 'fal' ? { duration: '5' } : { duration: 5, aspect_ratio: '16:9' }),
    });
    // The handle is stored before the job has moved at all.
    const stored = await until(
      async () => (await readLedger(db, (l) => l.jobOf(runId))) ?? undefined,
      'the handle to be stored',
    );
    expect(stored).toMatchObject({ provider: kind, jobId: job.id });
    provider.run(job.id);
    provider.finish(job.id, 'succeeded');

    const done = await runEnded(server.client, runId);
    expect(done.run).toMatchObject({ phase: 'done', billed: true, cost_credits: 10, progress: 1 });
    expect(done.run.assets).toEqual([
      expect.objectContaining({
        n: 0,
        mime: 'video/mp4',
        width: 1280,
        height: 720,
        duration_seconds: 5,
        uri: `runs://${runId}/assets/0`,
      }),
    ]);
    // A video is not scored, and says why: never a made-up score.
    expect(done.run.evaluation).toMatchObject({
      score: null,
      tested: 0,
      unscored: [
        { n: 0, mime: 'video/mp4', reason: expect.stringMatching(/scores still images; this output is a video/) },
      ],
    });
    expect((done.result.content[0] as { text: string }).text).toMatch(
      /1 video\(s\), 10 credits billed once\. Not scored: the brand rubric scores still images/,
    );
    const read = await server.client.readResource({ uri: done.run.assets[0]!.uri });
    const content = read.contents[0] as { mimeType: string; blob: string };
    expect(content.mimeType).toBe('video/mp4');
    expect(createHash('sha256').update(Buffer.from(content.blob, 'base64')).digest('hex')).toBe(
      done.run.assets[0]!.sha256,
    );

    // Replays of the finished run touch nothing upstream.
    const polls = (provider.stats.polls[job.id] ?? []).length;
    const downloads = provider.stats.downloads[job.id];
    const replays = await Promise.all(
      Array.from({ length: 20 }, () => callTool(server.client, 'create_product_video', args)),
    );
    expect(replays.every((r) => r.run.run_id === runId && r.run.phase === 'done')).toBe(true);
    expect(provider.stats).toMatchObject({ submits: 1, downloads: { [job.id]: downloads } });
    expect(provider.stats.polls[job.id]).toHaveLength(polls);
    expect(downloads).toBe(1);
    const usage = await readLedger(db, (l) => l.usage('local'));
    expect(usage.byTool.product_video).toMatchObject({ runs: 1, charges: 1, credits: 10 });
    expect(usage.byProvider[kind]).toEqual({ charges: 1, credits: 10 });
    expect(count(db, 'SELECT count(*) FROM run_jobs')).toBe(1);
  });
});

describe('a job at a Replicate-style provider', () => {
  it('cancels the job upstream once when the run is canceled, however often cancel_run is called', async () => {
    const provider = await fake('replicate');
    const db = tempDb();
    const server = await serve(db, 'replicate', provider, ['--log-level', 'info']);
    const created = await callTool(server.client, 'create_product_video', { ...VIDEO, idempotency_key: randomUUID() });
    const job = await provider.waitForJob();
    await until(
      async () => ((await readLedger(db, (l) => l.jobOf(created.run.run_id))) === null ? undefined : true),
      'the handle to be stored',
    );
    provider.run(job.id);
    const answers = [];
    for (let i = 0; i < 3; i++)
      answers.push(
        (await callTool(server.client, 'cancel_run', { run_id: created.run.run_id })).result.structuredContent,
      );
    expect(answers.map((a) => (a as { outcome: string }).outcome)).toEqual([
      'canceled',
      'already_canceled',
      'already_canceled',
    ]);
    await until(
      async () => (/canceled the job upstream/.test(server.stderr()) ? true : undefined),
      'the upstream cancel',
    );
    expect(provider.stats.cancels).toEqual({ [job.id]: 1 });
    expect(job.state).toBe('canceled');
    // Claimed once in the ledger: no other process, now or later, sends it again.
    expect(await readLedger(db, (l) => l.jobsAwaitingCancel())).toEqual([]);
    expect((await readLedger(db, (l) => l.jobOf(created.run.run_id)))?.cancelRequestedAt).not.toBeNull();
    expect((await callTool(server.client, 'poll_run', { run_id: created.run.run_id })).run).toMatchObject({
      phase: 'canceled',
      billed: false,
    });
    expect(provider.stats.submits).toBe(1);
  });

  it('reads the same job again after 5xx and 429 on its status, backing off (Retry-After honoured), and finishes it billed once', async () => {
    const provider = await fake('replicate');
    const db = tempDb();
    const server = await serve(db, 'replicate', provider);
    provider.statusScript = [{ status: 503 }, { status: 429, retryAfter: 1 }, { status: 500 }, { status: 502 }];
    const created = await callTool(server.client, 'create_product_video', { ...VIDEO, idempotency_key: randomUUID() });
    const job = await provider.waitForJob();
    await until(async () => (provider.statusScript.length === 0 ? true : undefined), 'the scripted failures to be met');
    provider.finish(job.id, 'succeeded');
    const done = await runEnded(server.client, created.run.run_id);
    expect(done.run).toMatchObject({ phase: 'done', billed: true });
    // Every read asked for the same job: the handle stood; nothing was submitted again.
    expect(Object.keys(provider.stats.polls)).toEqual([job.id]);
    expect(provider.stats.submits).toBe(1);
    const times = provider.stats.polls[job.id]!;
    const gaps = times.slice(1, 5).map((t, i) => t - times[i]!);
    // Half-jittered doublings of the 100 ms poll interval, and Retry-After's second after the 429.
    expect(gaps[0]).toBeGreaterThanOrEqual(100);
    expect(gaps[1]).toBeGreaterThanOrEqual(1000);
    expect(gaps[2]).toBeGreaterThanOrEqual(400);
    expect(gaps[3]).toBeGreaterThanOrEqual(800);
  });

  it("fails the run unbilled, with the provider's message, when the job fails upstream", async () => {
    const provider = await fake('replicate');
    const db = tempDb();
    const server = await serve(db, 'replicate', provider);
    const created = await callTool(server.client, 'create_product_video', { ...VIDEO, idempotency_key: randomUUID() });
    const job = await provider.waitForJob();
    provider.finish(job.id, 'failed', 'E005: the input image was flagged as sensitive');
    const failed = await runEnded(server.client, created.run.run_id);
    expect(failed.run).toMatchObject({
      phase: 'failed',
      billed: false,
      error: { code: 'generation_failed', details: { provider: 'replicate', job_id: job.id } },
    });
    expect(failed.run.error!.message).toBe(
      `replicate job ${job.id} failed: E005: the input image was flagged as sensitive`,
    );
    expect(failed.result.isError).toBe(true);
    expect(provider.stats.submits).toBe(1);
    expect(await readLedger(db, (l) => l.usage('local'))).toMatchObject({ runs: 1, charges: 0 });
  });

  it("serves the stored output after the provider's URL has expired, and never downloads it again", async () => {
    const provider = await fake('replicate');
    const db = tempDb();
    const server = await serve(db, 'replicate', provider);
    const created = await callTool(server.client, 'create_product_video', {
      ...VIDEO,
      duration_seconds: 10,
      idempotency_key: randomUUID(),
    });
    const job = await provider.waitForJob();
    provider.finish(job.id, 'succeeded');
    const done = await runEnded(server.client, created.run.run_id);
    expect(done.run).toMatchObject({
      phase: 'done',
      cost_credits: 20,
      assets: [expect.objectContaining({ duration_seconds: 10 })],
    });
    provider.expire(job.id);
    expect((await fetch(`${provider.origin}/files/${job.id}.mp4`)).status).toBe(404);
    for (const reader of [server, await serve(db, 'replicate', provider)]) {
      const polled = await callTool(reader.client, 'poll_run', { run_id: created.run.run_id });
      const read = await reader.client.readResource({ uri: polled.run.assets[0]!.uri });
      const content = read.contents[0] as { mimeType: string; blob: string };
      expect(content.mimeType).toBe('video/mp4');
      expect(createHash('sha256').update(Buffer.from(content.blob, 'base64')).digest('hex')).toBe(
        done.run.assets[0]!.sha256,
      );
    }
    expect(provider.stats.downloads[job.id]).toBe(2); // one by the server, one by this test's check of the expiry
  });

  it('scores a video by its poster frame where the definition says where the provider gives one, and says so', async () => {
    const provider = await fake('replicate');
    const db = tempDb();
    const server = await serve(db, 'replicate', provider, [], { outputs: { poster: 'poster' } });
    const created = await callTool(server.client, 'create_product_video', { ...VIDEO, idempotency_key: randomUUID() });
    const job = await provider.waitForJob();
    provider.finish(job.id, 'succeeded');
    const done = await runEnded(server.client, created.run.run_id);
    const evaluation = done.run.evaluation as {
      score: number;
      unscored: unknown[];
      variants: { n: number; scored: string; checks: { id: string }[] }[];
    };
    expect(done.run.assets).toEqual([expect.objectContaining({ mime: 'video/mp4' })]);
    expect(evaluation.score).toEqual(expect.any(Number));
    expect(evaluation.unscored).toEqual([]);
    expect(evaluation.variants).toEqual([expect.objectContaining({ n: 0, scored: 'poster frame' })]);
    expect(evaluation.variants[0]!.checks.map((c) => c.id)).toEqual(['size', 'palette_coverage']);
  });

  it('fails the run with a typed error, unbilled, when an output is larger than --max-output-bytes or was gone before it was fetched', async () => {
    const provider = await fake('replicate');
    const db = tempDb();
    const server = await serve(db, 'replicate', provider, ['--max-output-bytes', '2048']);
    const big = await callTool(server.client, 'create_product_video', { ...VIDEO, idempotency_key: randomUUID() });
    const bigJob = await provider.waitForJob(0);
    provider.finish(bigJob.id, 'succeeded');
    const tooLarge = await runEnded(server.client, big.run.run_id);
    expect(tooLarge.run).toMatchObject({
      phase: 'failed',
      billed: false,
      error: { code: 'generation_failed', details: { output_problem: 'too_large', limit: 2048 } },
    });
    expect(tooLarge.run.error!.message).toMatch(
      /Output 1 is larger than this server keeps \(\d+ bytes; the limit, --max-output-bytes, is 2048\)/,
    );

    const expired = await callTool(server.client, 'create_product_video', {
      ...VIDEO,
      brief: 'Another clip',
      idempotency_key: randomUUID(),
    });
    const expiredJob = await provider.waitForJob(1);
    provider.expire(expiredJob.id);
    provider.finish(expiredJob.id, 'succeeded');
    const gone = await runEnded(server.client, expired.run.run_id);
    expect(gone.run).toMatchObject({
      phase: 'failed',
      billed: false,
      error: { details: { output_problem: 'gone', status: 404 } },
    });
    expect(await readLedger(db, (l) => l.usage('local'))).toMatchObject({ runs: 2, charges: 0 });
  });
});

describe('a job provider that is not configured', () => {
  it('leaves create_product_video unlisted and says so at start-up', async () => {
    const server = await startStdio(tempDb(), ['--log-level', 'info'], { captureStderr: true });
    servers.push(server);
    const names = (await server.client.listTools()).tools.map((t) => t.name);
    expect(names).not.toContain('create_product_video');
    expect(names).toContain('create_product_shot');
    await until(
      async () =>
        /create_product_video is not served: it needs a job provider/.test(server.stderr()) ? true : undefined,
      'the start-up note',
    );
  });
});
