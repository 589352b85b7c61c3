// `runledger replay` as a user runs it: against runledger over stdio and HTTP, against toy servers
// that get idempotency wrong in one way each, and against a server that knows nothing of runledger.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_KINDS, HTTP_ONLY, LAUNCH_ONLY } from '../../src/harness/options.js';
import { recordSession, replay, statusOf, tempDir, toyServer, TRANSCRIPTS } from '../helpers/harness.js';
import { killAll, startHttp } from '../helpers/http.js';
import { CLI, PRODUCT_SHOT, tempDb } from '../helpers/mcp.js';

const WIDGETS = join(TRANSCRIPTS, 'widgets.jsonl');
const quote = (command: string[]) => command.map((part) => `'${part}'`).join(' ');

/** A server command runledger replay launches: runledger itself, slow enough to be killed mid-run. */
const runledgerServer = (db: string) =>
  quote([process.execPath, CLI, '--db', db, '--phase-delay-ms', '150', '--lease-ms', '1000', '--log-level', 'warn']);

describe('replay against runledger', () => {
  let transcript: string;

  beforeAll(async () => {
    // An agent's session, recorded through `runledger record` from the SDK's client: a create, a
    // retry, a refused change of arguments, a poll, a card waited for, and the bill.
    transcript = join(tempDir(), 'session.jsonl');
    const server = [process.execPath, CLI, '--db', tempDb(), '--phase-delay-ms', '50', '--log-level', 'warn'];
    await recordSession(transcript, server, async (client) => {
      const key = randomUUID();
      const shot = { ...PRODUCT_SHOT, variants: 1 };
      const created = await client.callTool({
        name: 'create_product_shot',
        arguments: { ...shot, idempotency_key: key },
      });
      await client.callTool({ name: 'create_product_shot', arguments: { ...shot, idempotency_key: key } });
      await client.callTool({
        name: 'create_product_shot',
        arguments: { ...shot, style: 'lifestyle', idempotency_key: key },
      });
      const runId = (created.structuredContent as { run_id: string }).run_id;
      await client.callTool({ name: 'poll_run', arguments: { run_id: runId, wait_seconds: 50 } });
      await client.callTool({
        name: 'create_social_card',
        arguments: { headline: 'Cold brew season', idempotency_key: randomUUID(), wait_seconds: 50 },
      });
      await client.callTool({ name: 'get_usage', arguments: {} });
    });
  });
  afterAll(killAll);

  it('replays a recorded SDK session cleanly over stdio under every fault kind, checking every invariant', async () => {
    const run = await replay(transcript, ['--server', runledgerServer(tempDb()), '--seed', '11']);
    expect(run.stderr).not.toMatch(/broken/);
    expect(run.code).toBe(0);
    const report = run.report!;
    expect(new Set(report.cases.map((c) => c.fault).filter((f) => f !== null))).toEqual(
      new Set(FAULT_KINDS.filter((kind) => !HTTP_ONLY.includes(kind))),
    );
    expect(report.faults.not_run.map((f) => f.fault)).toEqual(HTTP_ONLY);
    for (const invariant of report.invariants) expect([invariant.id, invariant.status]).toEqual([invariant.id, 'held']);
    expect(report.tools.find((t) => t.tool === 'create_product_shot')).toMatchObject({
      idempotent_hint: true,
      verdict: 'idempotent',
    });
    // The SIGKILL faults really restarted the server, and the retries after them found their runs.
    const killed = report.calls.filter((c) => c.fault === 'kill-between' || c.fault === 'kill-mid-run');
    expect(killed.filter((c) => c.role === 'retry').every((c) => c.replayed === true)).toBe(true);
    expect(run.stdout).toMatch(/✓ {2}one-charge-per-run/);
    // Calls sent as recorded say why: the refused change of arguments, the poll, the bill.
    expect(report.cases.filter((c) => c.fault === null).map((c) => [c.tool, c.why_no_fault])).toEqual([
      ['create_product_shot', 'it was refused when recorded'],
      ['poll_run', 'the tool is read-only'],
      ['get_usage', 'the tool is read-only'],
    ]);
  });

  it('replays the same session cleanly over Streamable HTTP, and says the SIGKILL faults need --server', async () => {
    const server = await startHttp(tempDb(), ['--phase-delay-ms', '50']);
    const run = await replay(transcript, ['--url', server.url, '--seed', '12']);
    expect(run.code).toBe(0);
    const report = run.report!;
    const ran = new Set(report.cases.map((c) => c.fault).filter((f) => f !== null));
    expect(ran).toEqual(new Set(FAULT_KINDS.filter((kind) => !LAUNCH_ONLY.includes(kind))));
    expect(report.faults.not_run.map((f) => f.fault).sort()).toEqual([...LAUNCH_ONLY].sort());
    expect(report.invariants.every((i) => i.status === 'held')).toBe(true);
    expect(run.stdout).toMatch(/not run: kill-between: it needs a server replay launches itself \(--server\)/);
  });
});

describe('replay catches a broken server', () => {
  it('names one-run-per-key when the server makes a new run on every call, though it claims idempotentHint', async () => {
    const run = await replay(WIDGETS, ['--server', quote(toyServer(['--bug', 'new-run-every-call'])), '--seed', '1']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/runledger replay: broken: .*one-run-per-key/);
    expect(run.stdout).toMatch(/✗ {2}one-run-per-key/);
    expect(run.stdout).toMatch(/one-run-per-key: create_widget key \S+ has \d+ runs/);
    const violation = run.report!.invariants.find((i) => i.id === 'one-run-per-key')!.violations[0]!;
    expect(violation.calls.length).toBeGreaterThanOrEqual(2);
    expect(run.report!.tools.find((t) => t.tool === 'create_widget')).toMatchObject({
      idempotent_hint: true,
      verdict: 'not idempotent',
    });
    expect(statusOf(run.report, 'conflict-refused')).toBe('broken');
  });

  it('names one-charge-per-run, and only that, when the server bills replays', async () => {
    const run = await replay(WIDGETS, ['--server', quote(toyServer(['--bug', 'bills-replays'])), '--seed', '2']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/runledger replay: broken: one-charge-per-run\n/);
    const charges = run.report!.invariants.find((i) => i.id === 'one-charge-per-run')!;
    expect(charges.violations[0]!.message).toMatch(/get_usage counts \d+ new charges for \d+ billed runs/);
    expect(charges.violations[0]!.calls.length).toBeGreaterThan(0);
    expect(run.report!.invariants.filter((i) => i.status === 'broken').map((i) => i.id)).toEqual([
      'one-charge-per-run',
    ]);
  });

  it('names the lost run when the server answers a different run id after a restart', async () => {
    const run = await replay(WIDGETS, [
      '--server',
      quote(toyServer(['--bug', 'forgets-on-restart'])),
      '--faults',
      'kill-between',
      '--seed',
      '3',
    ]);
    expect(run.code).toBe(1);
    expect(statusOf(run.report, 'same-answer')).toBe('broken');
    expect(statusOf(run.report, 'no-acknowledged-run-lost')).toBe('broken');
    expect(run.stdout).toMatch(
      /no-acknowledged-run-lost: run w_\S+, acknowledged by \d+\.\d+, is gone: poll_run answers not_found/,
    );
    // The retry right after the restart is the call that gave the other run.
    const sameAnswer = run.report!.invariants.find((i) => i.id === 'same-answer')!;
    const retries = run.report!.calls.filter((c) => c.fault === 'kill-between' && c.role === 'retry').map((c) => c.id);
    expect(sameAnswer.violations.some((v) => v.calls.some((id) => retries.includes(id)))).toBe(true);
  });
});

describe('replay against a server that is not runledger', () => {
  it('checks the ids it can see, tells which idempotentHint claims hold, and says what it could not check and why', async () => {
    const transcript = join(tempDir(), 'bare.jsonl');
    await recordSession(transcript, toyServer(['--bare']), async (client) => {
      const key = randomUUID();
      await client.callTool({ name: 'create_widget', arguments: { idempotency_key: key, label: 'Blue' } });
      await client.callTool({ name: 'create_widget', arguments: { idempotency_key: key, label: 'Blue' } });
      await client.callTool({ name: 'add_note', arguments: { text: 'hello' } });
    });
    const run = await replay(transcript, ['--server', quote(toyServer(['--bare'])), '--seed', '4']);
    expect(run.code).toBe(1);
    const report = run.report!;
    expect(report.server).toEqual({ name: 'toy-widgets', version: '1.0.0' });
    expect([
      report.profile.conventions.poll.value,
      report.profile.conventions.usage.value,
      report.profile.conventions.run_resource.value,
    ]).toEqual([null, null, null]);
    // A widget has a key and keeps its id on retry; a note claims idempotentHint, yet each retry adds one.
    expect(report.tools.find((t) => t.tool === 'create_widget')).toMatchObject({
      key_field: 'idempotency_key',
      run_id_field: 'widget_id',
      verdict: 'idempotent',
    });
    expect(report.tools.find((t) => t.tool === 'add_note')).toMatchObject({
      key_field: null,
      run_id_field: 'note_id',
      idempotent_hint: true,
      verdict: 'not idempotent',
    });
    expect(run.stdout).toMatch(/add_note .*claimed .*NOT idempotent \(one-run-per-key, same-answer/);
    const broken = report.invariants
      .flatMap((i) => i.violations.flatMap((v) => v.calls))
      .map((id) => report.calls.find((c) => c.id === id)!.tool);
    expect(new Set(broken)).toEqual(new Set(['add_note']));
    expect(report.invariants.find((i) => i.id === 'one-charge-per-run')).toMatchObject({
      status: 'not-checked',
      detail: expect.stringMatching(/no usage tool/),
    });
    // Without a poll tool, each key's last retry shows its run: a widget's answer is the finished call.
    expect(report.invariants.find((i) => i.id === 'terminal-within-bound')).toMatchObject({
      status: 'held',
      detail: expect.stringMatching(/by the last retry of each key/),
    });
    expect(run.stdout).toMatch(/– {2}one-charge-per-run .*not checked: no usage tool/);
  });

  it('sends the same calls with the same faults and keys for the same seed', async () => {
    const [a, b] = await Promise.all(
      [1, 2].map(() => replay(WIDGETS, ['--server', quote(toyServer()), '--seed', '99'])),
    );
    const calls = (run: typeof a) => run!.report!.calls.map((c) => [c.id, c.line, c.fault, c.role, c.key]);
    const cases = (run: typeof a) => run!.report!.cases.map((c) => [c.n, c.line, c.fault, c.extra]);
    expect(calls(a)).toEqual(calls(b));
    expect(cases(a)).toEqual(cases(b));
    expect(a!.stdout).toContain('--seed 99');
  });
});

describe('replay refuses bad input', () => {
  it('names the file and line of a malformed transcript', async () => {
    const file = join(tempDir(), 'bad.jsonl');
    writeFileSync(
      file,
      '{"v":1,"type":"session","at":"x","recorder":"r","command":["x"]}\n{"v":1,"type":"call","seq":1}\n',
    );
    const run = await replay(file, ['--server', 'true']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${file}:2: "ms" must be a number of milliseconds`);
  });

  it.each([
    [
      ['--url', 'http://127.0.0.1:1/mcp', '--faults', 'kill-mid-run'],
      /--faults kill-mid-run SIGKILLs and restarts the server, so it needs --server/,
    ],
    [['--faults', 'stream-broken'], /--faults stream-broken breaks an HTTP response stream, so it needs --url/],
    [['--faults', 'duplicate,fire'], /--faults: unknown fault "fire"/],
    [['--seed', 'abc'], /--seed must be a whole number/],
    [['--token', 't'], /--token goes with --url/],
    [['--url', 'ftp://x'], /--url must be http or https/],
    [['--report', '/nonexistent-dir/r.json', '--server', 'x'], /--report: cannot write \/nonexistent-dir\/r\.json/],
  ])('exits 2 naming the flag for %j', async (args, message) => {
    const run = await replay(WIDGETS, args);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
  });

  it('exits 3, not with a verdict, when the server dies on its own during the replay', async () => {
    const run = await replay(WIDGETS, [
      '--server',
      quote(toyServer(['--crash-at', '2'])),
      '--faults',
      'duplicate',
      '--seed',
      '5',
    ]);
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(
      /could not complete: the server exited on its own\n\(during case 1, transcript line \d+\)/,
    );
    expect(run.stdout).toBe('');
    expect(run.report).toBeUndefined();
  });

  it('exits 3 with the server’s last words when the server will not start', async () => {
    const run = await replay(WIDGETS, [
      '--server',
      quote([process.execPath, '-e', 'console.error("no database here"); process.exit(4)']),
    ]);
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/could not complete: cannot start the server .*\n?.*no database here/);
  });
});
