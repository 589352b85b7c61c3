// `runledger replay` against servers written with no thought of runledger, each with conventions of
// its own (names, text-JSON answers, run ids in _meta, status words) and, but for one, one way of
// getting idempotency wrong: each broken one is caught with the right invariant named, and the
// correct one passes with every invariant checked.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { FAULT_KINDS } from '../../src/harness/options.js';
import { ReportSchema, type Report } from '../../src/harness/report.js';
import { fixtureServer, freePort, quote, recordSession, replay, statusOf, tempDir } from '../helpers/harness.js';

type Session = (client: Client) => Promise<void>;

/** The JSON of an answer in a text block, the way these servers answer. */
const textJson = (result: unknown) =>
  JSON.parse(((result as CallToolResult).content[0] as { text: string }).text) as Record<string, unknown>;

const SESSIONS: Record<string, Session> = {
  'render-farm': async (client) => {
    const token = randomUUID();
    const scene = { request_token: token, scene: 'teapot on a table' };
    const first = textJson(await client.callTool({ name: 'submit_render', arguments: scene }));
    await client.callTool({ name: 'submit_render', arguments: scene });
    await client.callTool({ name: 'submit_render', arguments: { ...scene, scene: 'teacup on a table' } });
    await client.callTool({ name: 'get_render', arguments: { render_id: (first.job as { id: string }).id, wait: 5 } });
    await client.callTool({
      name: 'submit_render',
      arguments: { request_token: randomUUID(), scene: 'kettle', frames: 2 },
    });
    await client.callTool({ name: 'billing_summary', arguments: {} });
  },
  'race-server': async (client) => {
    const key = randomUUID();
    const sent = await client.callTool({ name: 'send_payment', arguments: { idempotency_key: key, amount: 25 } });
    await client.callTool({ name: 'send_payment', arguments: { idempotency_key: key, amount: 25 } });
    await client.callTool({ name: 'send_payment', arguments: { idempotency_key: key, amount: 30 } });
    await client.callTool({
      name: 'get_operation',
      arguments: { operation_id: (sent._meta as Record<string, string>)['com.example/operation_id'] },
    });
    await client.callTool({
      name: 'send_payment',
      arguments: { idempotency_key: randomUUID(), amount: 40, memo: 'rent' },
    });
    await client.callTool({ name: 'get_usage', arguments: {} });
  },
  'early-answer-server': async (client) => {
    const token = randomUUID();
    const task = textJson(
      await client.callTool({ name: 'create_task', arguments: { client_token: token, title: 'Water the plants' } }),
    );
    await client.callTool({ name: 'create_task', arguments: { client_token: token, title: 'Water the plants' } });
    await client.callTool({ name: 'check_task', arguments: { task_id: task.task_id } });
    await client.callTool({ name: 'create_task', arguments: { client_token: randomUUID(), title: 'Feed the cat' } });
  },
  'lenient-server': async (client) => {
    const key = randomUUID();
    const run = await client.callTool({ name: 'startRun', arguments: { dedupeKey: key, recipe: 'soup', servings: 4 } });
    await client.callTool({ name: 'startRun', arguments: { dedupeKey: key, recipe: 'soup', servings: 4 } });
    await client.callTool({ name: 'getRun', arguments: { runId: (run.structuredContent as { runId: string }).runId } });
    await client.callTool({ name: 'startRun', arguments: { dedupeKey: randomUUID(), recipe: 'bread' } });
  },
  'billing-server': async (client) => {
    const key = randomUUID();
    const run = textJson(
      await client.callTool({
        name: 'create_summary',
        arguments: { idempotency_key: key, url: 'https://example.com/a' },
      }),
    );
    await client.callTool({
      name: 'create_summary',
      arguments: { idempotency_key: key, url: 'https://example.com/a' },
    });
    await client.callTool({ name: 'poll_run', arguments: { run_id: run.run_id, wait_seconds: 5 } });
    await client.callTool({
      name: 'create_summary',
      arguments: { idempotency_key: randomUUID(), url: 'https://example.com/b', words: 100 },
    });
    await client.callTool({ name: 'get_usage', arguments: {} });
  },
  'keyless-server': async (client) => {
    const key = randomUUID();
    await client.callTool({
      name: 'sendEmail',
      arguments: { idempotencyKey: key, to: 'ann@example.com', subject: 'Invoice' },
    });
    await client.callTool({
      name: 'sendEmail',
      arguments: { idempotencyKey: key, to: 'ann@example.com', subject: 'Invoice' },
    });
    await client.callTool({
      name: 'sendEmail',
      arguments: { idempotencyKey: randomUUID(), to: 'bob@example.com', subject: 'Receipt' },
    });
  },
};

const transcripts: Record<string, string> = {};
beforeAll(async () => {
  await Promise.all(
    Object.entries(SESSIONS).map(async ([name, session]) => {
      transcripts[name] = join(tempDir(), `${name}.jsonl`);
      await recordSession(
        transcripts[name],
        fixtureServer(name, name === 'render-farm' ? ['--run-ms', '200'] : []),
        session,
      );
    }),
  );
}, 60_000);

const broken = (report: Report | undefined) =>
  report?.invariants.filter((i) => i.status === 'broken').map((i) => i.id) ?? [];
const notChecked = (report: Report | undefined) =>
  report?.invariants.filter((i) => i.status === 'not-checked').map((i) => i.id) ?? [];

/** The render farm's conventions, as a profile file. */
function renderFarmProfile(): string {
  const file = join(tempDir(), 'render-farm.profile.json');
  const profile = {
    name: 'render farm',
    key_argument: 'request_token',
    run_id: 'job.id',
    status: 'job.state',
    done_words: ['ready'],
    failed_words: ['failed'],
    usage: { tool: 'billing_summary', runs: 'renders' },
  };
  writeFileSync(file, JSON.stringify(profile));
  return file;
}

describe('replay against a correct server with conventions of its own', () => {
  it('checks every invariant under every fault, launched and reached over HTTP, and passes --require-all', async () => {
    const port = await freePort();
    const server = fixtureServer('render-farm', ['--run-ms', '200', '--http', String(port)]);
    const run = await replay(transcripts['render-farm']!, [
      '--server',
      quote(server),
      '--url',
      `http://127.0.0.1:${port}/mcp`,
      '--profile',
      renderFarmProfile(),
      '--require-all',
      '--seed',
      '21',
    ]);
    expect(run.stderr).not.toMatch(/runledger replay: (broken|not checked)/);
    expect(run.code).toBe(0);
    const report = run.report!;
    expect(report.verdict).toBe('held');
    // The report is what its published schema says it is.
    expect(ReportSchema.safeParse(report).error).toBeUndefined();
    expect(new Set(report.cases.map((c) => c.fault).filter((f) => f !== null))).toEqual(new Set(FAULT_KINDS));
    for (const invariant of report.invariants) expect([invariant.id, invariant.status]).toEqual([invariant.id, 'held']);
    // The poll tool and its wait were found in tools/list; the profile named the rest.
    expect(report.profile.conventions.poll).toMatchObject({
      value: 'get_render(render_id, wait ≤ 5)',
      from: 'detected',
    });
    expect(report.profile.conventions.usage).toMatchObject({
      value: 'billing_summary (runs: renders, charges: billed)',
      from: 'profile',
    });
    expect(report.tools.find((t) => t.tool === 'submit_render')).toMatchObject({
      key_field: 'request_token',
      run_id_field: 'job.id',
      verdict: 'idempotent',
    });
    // The SIGKILL cases shared one restart.
    expect(new Set(report.cases.filter((c) => c.batch !== null).map((c) => c.batch))).toEqual(new Set([1]));
    // The broken stream was re-issued as a new request, and the retry found the run.
    const broke = report.calls.filter((c) => c.fault === 'stream-broken');
    expect(broke.map((c) => c.role)).toEqual(['first', 'retry']);
    expect(broke[1]).toMatchObject({ status: 'answered', replayed: true });
    // The render farm reports progress before it answers: the cancel lands on it.
    expect(report.calls.find((c) => c.fault === 'cancel' && c.role === 'first')?.note).toMatch(
      /cancelled \(notifications\/cancelled\) on its first progress notification|answered before it could be cancelled/,
    );
  }, 120_000);

  it('with no profile, says what it could not check, which flag or profile field supplies it, and exits 4 under --require-all', async () => {
    const run = await replay(transcripts['render-farm']!, [
      '--server',
      quote(fixtureServer('render-farm', ['--run-ms', '200'])),
      '--require-all',
      '--settle-ms',
      '30000',
      '--seed',
      '7',
    ]);
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/runledger replay: not checked \(--require-all\): /);
    const report = run.report!;
    expect(report.verdict).toBe('incomplete');
    // The job's id and the poll tool are found unaided; its key argument and its status words are not.
    expect(notChecked(report)).toEqual(['terminal-within-bound', 'conflict-refused', 'conflict-created-nothing']);
    expect(report.invariants.find((i) => i.id === 'conflict-refused')!.missing).toEqual([
      {
        convention: 'the argument that carries the idempotency key',
        flag: '--key-argument NAME',
        profile_field: 'key_argument',
      },
    ]);
    expect(report.invariants.find((i) => i.id === 'terminal-within-bound')!.missing[0]).toMatchObject({
      profile_field: 'status, done_words, failed_words',
    });
    expect(run.stdout).toMatch(
      /missing: the argument that carries the idempotency key: give --key-argument NAME, or "key_argument" in a --profile file/,
    );
    expect(report.profile.conventions.poll).toMatchObject({
      value: 'get_render(render_id, wait ≤ 5)',
      from: 'detected',
    });
    // A run whose status it cannot read is no reason to wait out the bound.
    expect(report.duration_ms).toBeLessThan(15_000);
  });

  it('names no-progress-after-response, and only that, when progress comes after the answer', async () => {
    const server = fixtureServer('render-farm', ['--bug', 'late-progress']);
    const run = await replay(transcripts['render-farm']!, [
      '--server',
      quote(server),
      '--profile',
      renderFarmProfile(),
      '--faults',
      'duplicate,burst',
      '--seed',
      '23',
    ]);
    expect(run.code).toBe(1);
    expect(broken(run.report)).toEqual(['no-progress-after-response']);
    expect(run.stdout).toMatch(
      /no-progress-after-response: \d+\.\d+: a progress notification for submit_render came [\d.]+ ms after its answer/,
    );
  });
});

describe('replay catches each broken server, naming the invariant', () => {
  it('one-run-per-key for a server that duplicates under a burst (its run ids in _meta)', async () => {
    const run = await replay(transcripts['race-server']!, [
      '--server',
      quote(fixtureServer('race-server')),
      '--seed',
      '31',
    ]);
    expect(run.code).toBe(1);
    expect(broken(run.report)).toContain('one-run-per-key');
    expect(run.stdout).toMatch(/one-run-per-key: send_payment key \S+ has \d+ runs: op_/);
    expect(run.report!.tools.find((t) => t.tool === 'send_payment')).toMatchObject({
      run_id_field: '_meta.com.example/operation_id',
      verdict: 'not idempotent',
    });
    // Its refusals name the run holding the key (existing_run_id), and are refusals all the same.
    expect(statusOf(run.report, 'conflict-refused')).toBe('held');
  });

  it('no-acknowledged-run-lost for a server that answers before it persists', async () => {
    const run = await replay(transcripts['early-answer-server']!, [
      '--server',
      quote(fixtureServer('early-answer-server')),
      '--seed',
      '32',
    ]);
    expect(run.code).toBe(1);
    expect(broken(run.report)).toContain('no-acknowledged-run-lost');
    expect(run.stdout).toMatch(
      /no-acknowledged-run-lost: run t-\S+, acknowledged by \d+\.\d+, is gone: check_task answers not_found/,
    );
  });

  it('conflict-refused for a server that answers a changed request with the first run', async () => {
    const run = await replay(transcripts['lenient-server']!, [
      '--server',
      quote(fixtureServer('lenient-server')),
      '--seed',
      '33',
    ]);
    expect(run.code).toBe(1);
    expect(broken(run.report)).toEqual(['conflict-refused']);
    expect(run.stdout).toMatch(
      /conflict-refused: \d+\.\d+: startRun key \S+ with changed arguments was answered \(run r\S+\) instead of refused/,
    );
  });

  it('one-charge-per-run for a server that bills every call, reading its bill from a JSON text block', async () => {
    const run = await replay(transcripts['billing-server']!, [
      '--server',
      quote(fixtureServer('billing-server')),
      '--seed',
      '34',
    ]);
    expect(run.code).toBe(1);
    expect(broken(run.report)).toEqual(['one-charge-per-run']);
    expect(run.stdout).toMatch(/one-charge-per-run: get_usage counts \d+ new charges for \d+ billed runs/);
  });

  it('one-run-per-key for a server that ignores the key, without calling its runs lost', async () => {
    const run = await replay(transcripts['keyless-server']!, [
      '--server',
      quote(fixtureServer('keyless-server')),
      '--seed',
      '35',
    ]);
    expect(run.code).toBe(1);
    expect(broken(run.report)).toContain('one-run-per-key');
    expect(broken(run.report)).not.toContain('no-acknowledged-run-lost');
    expect(notChecked(run.report)).toContain('no-acknowledged-run-lost');
  });
});
