// A paid, OpenAI-compatible provider behind runledger, against a fake API on loopback that honours
// Idempotency-Key and counts raw requests and billable calls per key.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
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

const API_KEY = `sk-fake-${randomUUID()}`;

interface Fake {
  base: string;
  script(steps: object[]): Promise<void>;
  stats(): Promise<{
    raw: Record<string, number>;
    billable: Record<string, number>;
    times: Record<string, number[]>;
    aborted: number;
  }>;
  child: ChildProcess;
}

const children: ChildProcess[] = [];
const servers: StdioServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

async function startFake(): Promise<Fake> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('../fixtures/fake-openai.mjs', import.meta.url))], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, FAKE_OPENAI_KEY: API_KEY },
  });
  children.push(child);
  const port = await new Promise<number>((resolve) =>
    createInterface({ input: child.stdout! }).once('line', (line) =>
      resolve((JSON.parse(line) as { port: number }).port),
    ),
  );
  const origin = `http://127.0.0.1:${port}`;
  return {
    base: `${origin}/v1`,
    child,
    script: async (steps) => void (await fetch(`${origin}/_script`, { method: 'POST', body: JSON.stringify(steps) })),
    stats: async () => (await (await fetch(`${origin}/_stats`)).json()) as Awaited<ReturnType<Fake['stats']>>,
  };
}

async function startServer(
  db: string,
  fake: Fake,
  flags: string[] = [],
  env: Record<string, string> = {},
): Promise<StdioServer> {
  const server = await startStdio(
    db,
    [
      '--provider',
      'openai',
      '--provider-url',
      fake.base,
      '--provider-key-env',
      'FAKE_PROVIDER_KEY',
      '--lease-ms',
      '1000',
      ...flags,
    ],
    {
      env: { FAKE_PROVIDER_KEY: API_KEY, ...env },
      captureStderr: true,
    },
  );
  servers.push(server);
  return server;
}

const usageOf = (db: string) => readLedger(db, (ledger) => ledger.usage('local'));

describe('an OpenAI-compatible provider', () => {
  it('is called once per image: retries and 50 concurrent duplicates make one raw request per variant', async () => {
    const fake = await startFake();
    const db = tempDb();
    const server = await startServer(db, fake, ['--phase-delay-ms', '200']);
    const key = randomUUID();
    const first = await callTool(server.client, 'create_product_shot', {
      ...PRODUCT_SHOT,
      variants: 2,
      idempotency_key: key,
    });
    const again = await callTool(server.client, 'create_product_shot', {
      ...PRODUCT_SHOT,
      variants: 2,
      idempotency_key: key,
    });
    const burst = await Promise.all(
      Array.from({ length: 50 }, () =>
        callTool(server.client, 'create_product_shot', { ...PRODUCT_SHOT, variants: 2, idempotency_key: key }),
      ),
    );
    const runId = first.run.run_id;
    expect(new Set([again, ...burst].map((a) => a.run.run_id))).toEqual(new Set([runId]));
    const done = await runEnded(server.client, runId);
    expect(done.run).toMatchObject({ phase: 'done', billed: true });
    expect(done.run.assets).toHaveLength(2);
    const stats = await fake.stats();
    expect(stats.raw).toEqual({ [`${runId}/0`]: 1, [`${runId}/1`]: 1 });
    expect(await usageOf(db)).toMatchObject({
      runs: 1,
      charges: 1,
      byProvider: { openai: { charges: 1, credits: 8 } },
    });
    // The prompt-drawn images are scored on their pixels; the checks that need a layout say why they were skipped.
    const variant = (
      done.run.evaluation as {
        variants: {
          checks: { id: string; passed: boolean; evidence: string }[];
          skipped: { id: string; reason: string }[];
        }[];
      }
    ).variants[0]!;
    expect(variant.checks.map((c) => c.id)).toEqual(['size', 'palette_coverage']);
    // The provider's 1024×1024 for a 1:1 request of 1080×1080 is within the size check's tolerance.
    expect(variant.checks[0]).toMatchObject({
      passed: true,
      evidence: expect.stringMatching(/^1024×1024 rendered; size "1:1" asks for 1080×1080: aspect 1\.000/),
    });
    expect(variant.skipped.map((s) => s.id)).toEqual([
      'safe_margin',
      'logo_present',
      'banned_phrases',
      'text_contrast',
      'text_fit',
    ]);
  });

  it('re-sends the same key after a crash between the answer and storing the image, and is billed once everywhere', async () => {
    const fake = await startFake();
    const db = tempDb();
    const doomed = await startServer(db, fake, [], { RUNLEDGER_FAILPOINTS: 'generated' });
    const key = randomUUID();
    const created = await callTool(doomed.client, 'create_social_card', {
      headline: 'Crash after the answer',
      idempotency_key: key,
    });
    const runId = created.run.run_id;
    await new Promise((resolve) => (doomed.client.onclose = () => resolve(undefined)));
    expect((await fake.stats()).raw).toEqual({ [`${runId}/0`]: 1 });

    const server = await startServer(db, fake);
    const done = await runEnded(server.client, runId);
    expect(done.run).toMatchObject({ phase: 'done', billed: true, attempts: 2 });
    const stats = await fake.stats();
    expect(stats.raw).toEqual({ [`${runId}/0`]: 2 });
    expect(stats.billable).toEqual({ [`${runId}/0`]: 1 });
    expect(await usageOf(db)).toMatchObject({ runs: 1, charges: 1 });
  });

  it('retries 500s and a timeout with the same key, honours Retry-After, and fails a 400 unbilled with the provider message', async () => {
    const fake = await startFake();
    const db = tempDb();
    const server = await startServer(db, fake, ['--provider-timeout-ms', '1000']);
    const create = async (headline: string) =>
      (await callTool(server.client, 'create_social_card', { headline, idempotency_key: randomUUID() })).run.run_id;

    await fake.script([{ status: 500 }, { status: 500 }]);
    const flaky = await create('Two server errors first');
    expect((await runEnded(server.client, flaky)).run).toMatchObject({ phase: 'done', billed: true });
    expect((await fake.stats()).raw[`${flaky}/0`]).toBe(3);

    await fake.script([{ delayMs: 30_000 }]);
    const hung = await create('A hung call first');
    expect((await runEnded(server.client, hung)).run).toMatchObject({ phase: 'done', billed: true });
    expect((await fake.stats()).raw[`${hung}/0`]).toBe(2);

    await fake.script([{ status: 429, retryAfter: 2 }]);
    const throttled = await create('Throttled first');
    expect((await runEnded(server.client, throttled)).run.phase).toBe('done');
    const [firstTry, secondTry] = (await fake.stats()).times[`${throttled}/0`]!;
    expect(secondTry! - firstTry!).toBeGreaterThanOrEqual(2000);

    await fake.script([{ status: 400, message: 'Your request was rejected as a result of our safety system.' }]);
    const refused = await create('Refused');
    const failed = await runEnded(server.client, refused);
    expect(failed.run).toMatchObject({ phase: 'failed', billed: false, error: { code: 'generation_failed' } });
    expect(failed.run.error!.message).toMatch(/HTTP 400.*safety system/);
    expect((await fake.stats()).raw[`${refused}/0`]).toBe(1);
    expect(await usageOf(db)).toMatchObject({ runs: 4, charges: 3 });
  });

  it('answers a wait on a slow provider with a live run, finishes it later, and aborts the call on cancel, unbilled', async () => {
    const fake = await startFake();
    const db = tempDb();
    const server = await startServer(db, fake);
    await fake.script([{ delayMs: 3000 }]);
    const slow = await callTool(server.client, 'create_social_card', {
      headline: 'Slow',
      idempotency_key: randomUUID(),
      wait_seconds: 1,
    });
    expect(['composing', 'rendering']).toContain(slow.run.phase);
    expect((await runEnded(server.client, slow.run.run_id)).run).toMatchObject({ phase: 'done', billed: true });

    await fake.script([{ delayMs: 60_000 }]);
    const doomed = await callTool(server.client, 'create_social_card', {
      headline: 'Cancel me',
      idempotency_key: randomUUID(),
    });
    await until(
      async () => ((await fake.stats()).raw[`${doomed.run.run_id}/0`] === 1 ? true : undefined),
      'the call to reach the provider',
    );
    const canceled = await callTool(server.client, 'cancel_run', { run_id: doomed.run.run_id });
    expect(canceled.result.structuredContent).toMatchObject({ outcome: 'canceled' });
    await until(
      async () => ((await fake.stats()).aborted === 1 ? true : undefined),
      'the call in flight to be aborted',
    );
    expect((await callTool(server.client, 'poll_run', { run_id: doomed.run.run_id })).run).toMatchObject({
      phase: 'canceled',
      billed: false,
    });
    expect(await usageOf(db)).toMatchObject({ runs: 2, charges: 1 });
  });

  it('fetches an image answered as a URL once, and stores it like any other', async () => {
    const fake = await startFake();
    const db = tempDb();
    const server = await startServer(db, fake);
    await fake.script([{ url: true }]);
    const created = await callTool(server.client, 'create_social_card', {
      headline: 'By URL',
      channel: 'landscape',
      idempotency_key: randomUUID(),
    });
    const done = await runEnded(server.client, created.run.run_id);
    expect(done.run).toMatchObject({ phase: 'done', assets: [{ mime: 'image/png', width: 1536, height: 1024 }] });
    const read = await server.client.readResource({ uri: done.run.assets[0]!.uri });
    expect((read.contents[0] as { mimeType: string }).mimeType).toBe('image/png');
    expect((await fake.stats()).raw).toEqual({ [`${created.run.run_id}/0`]: 1 });
  });

  it('keeps the API key out of stderr, the ledger file and every answer', async () => {
    const fake = await startFake();
    const db = tempDb();
    const server = await startServer(db, fake, ['--log-level', 'debug']);
    const answers: unknown[] = [];
    const ok = await callTool(server.client, 'create_social_card', {
      headline: 'Keep the key',
      idempotency_key: randomUUID(),
    });
    answers.push(ok.result, (await runEnded(server.client, ok.run.run_id)).result);
    await fake.script([{ status: 401, message: `Incorrect API key provided: ${API_KEY}` }]);
    const refused = await callTool(server.client, 'create_social_card', {
      headline: 'Echoed key',
      idempotency_key: randomUUID(),
    });
    const failed = await runEnded(server.client, refused.run.run_id);
    expect(failed.run.phase).toBe('failed');
    answers.push(
      failed.result,
      (await callTool(server.client, 'get_usage', {})).result,
      (await callTool(server.client, 'list_runs', {})).result,
    );
    await server.close();
    expect(server.stderr()).toMatch(/run created/);
    const files = [db, `${db}-wal`].map((f) => {
      try {
        return readFileSync(f).toString('latin1');
      } catch {
        return '';
      }
    });
    for (const text of [server.stderr(), JSON.stringify(answers), ...files]) expect(text.includes(API_KEY)).toBe(false);
    expect(JSON.stringify(failed.result)).toContain('[redacted]');
  });
});
