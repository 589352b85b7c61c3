// Issue 22's defects, each as a user meets it: every test here failed against the harness before the
// fix (verified against the code it replaced), and says which defect it pins down.
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixtureServer, quote, recordSession, replay, statusOf, tempDir } from '../helpers/harness.js';

describe('a server with conventions other than runledger’s names', () => {
  let transcript: string;

  beforeAll(async () => {
    transcript = join(tempDir(), 'lenient.jsonl');
    await recordSession(transcript, fixtureServer('lenient-server'), async (client) => {
      const run = await client.callTool({
        name: 'startRun',
        arguments: { dedupeKey: randomUUID(), recipe: 'soup', servings: 4 },
      });
      await client.callTool({
        name: 'getRun',
        arguments: { runId: (run.structuredContent as { runId: string }).runId },
      });
      await client.callTool({ name: 'startRun', arguments: { dedupeKey: randomUUID(), recipe: 'bread' } });
      await client.callTool({ name: 'startRun', arguments: { dedupeKey: randomUUID(), recipe: 'salad' } });
    });
  });

  it('follows its runs through its own poll tool (getRun, not poll_run), so lost and unfinished runs are checked', async () => {
    // Before: runs were followed only through a tool named poll_run taking run_id.
    const run = await replay(transcript, [
      '--server',
      quote(fixtureServer('lenient-server')),
      '--faults',
      'duplicate,kill-between',
      '--seed',
      '41',
    ]);
    expect(statusOf(run.report, 'no-acknowledged-run-lost')).toBe('held');
    expect(statusOf(run.report, 'terminal-within-bound')).toBe('held');
    expect(run.report!.invariants.find((i) => i.id === 'terminal-within-bound')!.detail).not.toMatch(/last retry/);
  });

  it('times out each call a share of the replay’s own answer time in, however long the recording took', async () => {
    // Before: the timeout fired within the recorded duration, so a fast recording of a call that now
    // takes 300 ms was answered before its timeout.
    const slow = join(tempDir(), 'slow-recording.jsonl');
    const lines = readFileSync(transcript, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    writeFileSync(
      slow,
      lines.map((line) => JSON.stringify(line.type === 'call' ? { ...line, ms: 5000 } : line)).join('\n') + '\n',
    );
    const run = await replay(slow, [
      '--server',
      quote(fixtureServer('lenient-server', ['--answer-ms', '300'])),
      '--faults',
      'timeout',
      '--seed',
      '42',
    ]);
    const timedOut = run.report!.calls.filter((c) => c.fault === 'timeout' && c.role === 'first');
    expect(timedOut.length).toBeGreaterThanOrEqual(3);
    for (const call of timedOut) expect([call.id, call.status]).toEqual([call.id, 'aborted']);
    expect(run.code).toBe(0);
  });
});

describe('a server that refuses a reused key naming the run that holds it', () => {
  it('reads the refusal as a refusal, though it has a top-level existing_run_id', async () => {
    // Before: an isError answer was a refusal only when no *_id field was in it: "conflict-refused broken".
    const transcript = join(tempDir(), 'payments.jsonl');
    await recordSession(transcript, fixtureServer('race-server'), async (client) => {
      await client.callTool({ name: 'send_payment', arguments: { idempotency_key: randomUUID(), amount: 25 } });
      await client.callTool({
        name: 'send_payment',
        arguments: { idempotency_key: randomUUID(), amount: 40, memo: 'rent' },
      });
    });
    const run = await replay(transcript, [
      '--server',
      quote(fixtureServer('race-server')),
      '--faults',
      'changed-args',
      '--seed',
      '43',
    ]);
    expect(run.code).toBe(0);
    expect(statusOf(run.report, 'conflict-refused')).toBe('held');
    expect(
      run
        .report!.calls.filter((c) => c.role === 'conflict')
        .every((c) => c.refused === true && c.error_code === 'idempotency_key_reused'),
    ).toBe(true);
  });
});

describe('a server whose bill and poll tool read differently', () => {
  let transcript: string;

  beforeAll(async () => {
    transcript = join(tempDir(), 'summaries.jsonl');
    await recordSession(transcript, fixtureServer('billing-server'), async (client) => {
      await client.callTool({
        name: 'create_summary',
        arguments: { idempotency_key: randomUUID(), url: 'https://example.com/a' },
      });
      await client.callTool({
        name: 'create_summary',
        arguments: { idempotency_key: randomUUID(), url: 'https://example.com/b' },
      });
    });
  });

  it('reads get_usage from a JSON text block, so double billing is caught and the exit is 1', async () => {
    // Before: get_usage was read from structuredContent only: "one-charge-per-run not checked", exit 0.
    const run = await replay(transcript, [
      '--server',
      quote(fixtureServer('billing-server')),
      '--faults',
      'duplicate',
      '--seed',
      '44',
    ]);
    expect(run.code).toBe(1);
    expect(statusOf(run.report, 'one-charge-per-run')).toBe('broken');
  });

  it('waits no longer than the poll tool’s own wait_seconds maximum, so its runs are found', async () => {
    // Before: every settle poll asked for wait_seconds 50 (runledger's own limit, copied in), and a
    // tool that allows 5 refused it: "no-acknowledged-run-lost broken" on runs that were there.
    const run = await replay(transcript, [
      '--server',
      quote(fixtureServer('billing-server')),
      '--faults',
      'lost-answer',
      '--seed',
      '45',
    ]);
    expect(statusOf(run.report, 'no-acknowledged-run-lost')).toBe('held');
    expect(statusOf(run.report, 'terminal-within-bound')).toBe('held');
    expect(run.report!.calls.filter((c) => c.role === 'poll').every((c) => c.refused === false)).toBe(true);
  });
});

describe('a server that ignores the key', () => {
  it('reports its keys as having several runs, not its runs as lost', async () => {
    // Before: each key's last retry answered a new run, and the first was reported lost too.
    const transcript = join(tempDir(), 'emails.jsonl');
    await recordSession(transcript, fixtureServer('keyless-server'), async (client) => {
      await client.callTool({
        name: 'sendEmail',
        arguments: { idempotencyKey: randomUUID(), to: 'ann@example.com', subject: 'Invoice' },
      });
    });
    const run = await replay(transcript, [
      '--server',
      quote(fixtureServer('keyless-server')),
      '--faults',
      'duplicate,timeout',
      '--seed',
      '46',
    ]);
    expect(run.code).toBe(1);
    expect(statusOf(run.report, 'one-run-per-key')).toBe('broken');
    expect(statusOf(run.report, 'no-acknowledged-run-lost')).not.toBe('broken');
  });
});

describe('the harness’s own sources', () => {
  it('import neither the ledger nor the composer, and copy none of runledger’s limits', () => {
    // Before: plan.ts and options.ts took the PRNG from src/compose, answers.ts the fingerprint from
    // src/ledger, and replay.ts had MAX_WAIT_SECONDS = 50.
    const dir = fileURLToPath(new URL('../../src/harness/', import.meta.url));
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const source = readFileSync(join(dir, file), 'utf8');
      expect([file, source.match(/from '\.\.\/(ledger|compose)\/[^']*'/g)]).toEqual([file, null]);
      expect([file, /MAX_WAIT|\b50\b/.test(source)]).toEqual([file, false]);
    }
  });
});
