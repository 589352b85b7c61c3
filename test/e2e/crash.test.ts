// Runs survive crashes that are not their fault, at every step, and a run that is the cause ends at a
// bound. Crashes are real SIGKILLs, landed at named points by failpoints (see src/failpoints.ts).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  callTool,
  CLI,
  PRODUCT_SHOT,
  readLedger,
  runEnded,
  startStdio,
  tempDb,
  type StdioServer,
} from '../helpers/mcp.js';

const servers: StdioServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
});

const FLAGS = ['--lease-ms', '1000', '--concurrency', '1'];

async function start(db: string, failpoints?: string): Promise<StdioServer> {
  const server = await startStdio(
    db,
    FLAGS,
    failpoints === undefined ? {} : { env: { RUNLEDGER_FAILPOINTS: failpoints } },
  );
  servers.push(server);
  return server;
}

/** Runs a server with a failpoint armed until it kills itself, its stdin kept open as a client's would be. */
function untilKilled(db: string, failpoints: string): Promise<void> {
  const child = spawn(process.execPath, [CLI, '--db', db, '--log-level', 'warn', ...FLAGS], {
    env: { ...process.env, RUNLEDGER_FAILPOINTS: failpoints },
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Resolves once the server's process has exited (a failpoint SIGKILLed it). */
const died = (server: StdioServer) => new Promise<void>((resolve) => (server.client.onclose = () => resolve()));

describe('crashes unrelated to the run', () => {
  it.each([
    ['compose', 'during compose'],
    ['composed', 'between compose and its recovery point'],
    ['generate', 'during render'],
    ['generated', 'between the render and attaching the image'],
    ['finish', 'between the last image and finish'],
    ['billing', 'inside the billing transaction'],
  ])('resumes a run killed at "%s" (%s) from its recovery point, billed once', async (point) => {
    const db = tempDb();
    const doomed = await start(db, point);
    const gone = died(doomed);
    const key = randomUUID();
    // The earliest points kill the server before its answer to the create goes out: the agent then
    // finds its run by key, as it would after any lost answer.
    await callTool(doomed.client, 'create_product_shot', { ...PRODUCT_SHOT, variants: 2, idempotency_key: key }).catch(
      () => undefined,
    );
    await gone;
    const before = await readLedger(db, (ledger) => ledger.findRun('local', 'product_shot', key));
    expect(before.phase).not.toBe('done');

    const server = await start(db);
    const done = await runEnded(server.client, before.id);
    expect(done.run).toMatchObject({ phase: 'done', billed: true, attempts: 2, stalls: 0 });
    expect(done.run.assets).toHaveLength(2);
    // What was stored before the crash stands: phases already entered keep their first timestamps.
    for (const entry of before.phases) expect(done.run.phases).toContainEqual(entry);
    expect(await readLedger(db, (ledger) => ledger.usage('local'))).toMatchObject({ runs: 1, charges: 1, credits: 8 });
  });

  it('finishes a run, billed once, whose server was SIGKILLed 10 times, each time after it made progress', async () => {
    const db = tempDb();
    const server = await start(db, 'progress');
    const gone = died(server);
    const key = randomUUID();
    await callTool(server.client, 'create_product_shot', { ...PRODUCT_SHOT, variants: 4, idempotency_key: key }).catch(
      () => undefined,
    );
    await gone;
    // The next servers need no client: each takes the run over as it starts (its holder is known to
    // be dead) and dies at its first progress, often before a handshake could finish.
    for (let kill = 1; kill < 10; kill++) await untilKilled(db, 'progress');
    const finisher = await start(db);
    const found = await callTool(finisher.client, 'poll_run', { idempotency_key: key, tool: 'product_shot' });
    const done = await runEnded(finisher.client, found.run.run_id);
    expect(done.run).toMatchObject({ phase: 'done', billed: true, attempts: 11, stalls: 0 });
    expect(done.run.assets).toHaveLength(4);
    expect(await readLedger(db, (ledger) => ledger.usage('local'))).toMatchObject({ runs: 1, charges: 1, credits: 16 });
  });
});

describe('a poison run', () => {
  it('fails after the bound, naming its attempts, unbilled, while the server keeps answering and its neighbour finishes', async () => {
    const db = tempDb();
    // Every render thread given a scene with this text dies; the server process lives on.
    const server = await start(db, 'render-thread=POISON');
    const poison = await callTool(server.client, 'create_social_card', {
      headline: 'POISON pill',
      idempotency_key: randomUUID(),
    });
    const neighbour = await callTool(server.client, 'create_social_card', {
      headline: 'Healthy neighbour',
      idempotency_key: randomUUID(),
    });
    const healthy = await runEnded(server.client, neighbour.run.run_id);
    expect(healthy.run).toMatchObject({ phase: 'done', billed: true });
    const failed = await runEnded(server.client, poison.run.run_id);
    expect(failed.run).toMatchObject({
      phase: 'failed',
      billed: false,
      stalls: 5,
      attempts: 5,
      error: { code: 'generation_failed' },
    });
    expect(failed.run.error!.message).toMatch(
      /^Gave up after 5 attempts, the last 5 of them failing in a row on the run itself; the last: the render thread died \(exit code 70\) while rendering image 1 of 1$/,
    );
    // The same process answered all along: a thread died each time, never the server.
    expect((await callTool(server.client, 'get_usage', {})).result.structuredContent).toMatchObject({
      runs: 2,
      charges: 1,
    });
    expect(await readLedger(db, (ledger) => ledger.usage('local'))).toMatchObject({ runs: 2, charges: 1 });
  });
});
