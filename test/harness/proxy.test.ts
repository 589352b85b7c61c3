// runledger replay pointed at runledger proxy: in front of a server whose tools act on every call,
// the proxy keeps every invariant the harness checks; the same transcript against the bare server
// breaks them.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { recordSession, replay, statusOf, tempDir } from '../helpers/harness.js';
import { CLI, tempDb } from '../helpers/mcp.js';

const COUNTING = fileURLToPath(new URL('../fixtures/counting-server.mjs', import.meta.url));
const quote = (command: string[]) => command.map((part) => `'${part}'`).join(' ');
const counting = (log: string) => [process.execPath, COUNTING, '--log', log, '--work-ms', '100'];
const proxied = (db: string, log: string) => [
  process.execPath,
  CLI,
  'proxy',
  '--db',
  db,
  '--lease-ms',
  '1000',
  '--log-level',
  'warn',
  '--',
  ...counting(log),
];

describe('replay against runledger proxy', () => {
  let transcript: string;

  beforeAll(async () => {
    // An agent's session through the proxy, recorded with `runledger record`: two tickets, a retry,
    // a refused change of arguments, a status change and a read.
    transcript = join(tempDir(), 'tickets.jsonl');
    const dir = tempDir();
    await recordSession(transcript, proxied(join(dir, 'ledger.db'), join(dir, 'effects')), async (client) => {
      const key = randomUUID();
      await client.callTool({ name: 'create_ticket', arguments: { title: 'Printer on fire', idempotency_key: key } });
      await client.callTool({ name: 'create_ticket', arguments: { title: 'Printer on fire', idempotency_key: key } });
      await client.callTool({ name: 'create_ticket', arguments: { title: 'Printer on ice', idempotency_key: key } });
      await client.callTool({
        name: 'create_ticket',
        arguments: { title: 'Coffee machine', priority: 'high', idempotency_key: randomUUID() },
      });
      await client.callTool({
        name: 'set_status',
        arguments: { ticket: 't_1', status: 'closed', idempotency_key: randomUUID() },
      });
      await client.callTool({ name: 'list_tickets', arguments: {} });
    });
  });

  it('keeps every invariant through the proxy, under every fault that applies', async () => {
    const dir = tempDir();
    const run = await replay(transcript, ['--server', quote(proxied(tempDb(), join(dir, 'effects'))), '--seed', '5']);
    expect(run.stderr).not.toMatch(/broken/);
    expect(run.code).toBe(0);
    for (const invariant of run.report!.invariants)
      expect([invariant.id, invariant.status]).not.toEqual([invariant.id, 'broken']);
    expect(run.report!.invariants.find((i) => i.id === 'one-run-per-key')?.status).toBe('held');
  }, 180_000);

  it('breaks one-run-per-key against the bare server, which acts on every retry', async () => {
    const dir = tempDir();
    const run = await replay(transcript, ['--server', quote(counting(join(dir, 'effects'))), '--seed', '5']);
    expect(run.code).toBe(1);
    expect(run.report!.invariants.find((i) => i.id === 'one-run-per-key')?.status).toBe('broken');
  }, 180_000);
});

describe('replay reads runledger proxy by its own marks', () => {
  it('follows each call by the proxy’s _meta run id, for upstream answers that name no run of their own', async () => {
    // Before: the proxy's _meta["io.runledger/run_id"] and replayed were ignored, so an upstream whose
    // answers carry no id left one-run-per-key and no-acknowledged-run-lost unchecked.
    const transcript = join(tempDir(), 'cards.jsonl');
    const dir = tempDir();
    await recordSession(transcript, proxied(join(dir, 'ledger.db'), join(dir, 'effects')), async (client) => {
      const key = randomUUID();
      await client.callTool({ name: 'social_card', arguments: { headline: 'Spring sale', idempotency_key: key } });
      await client.callTool({ name: 'social_card', arguments: { headline: 'Spring sale', idempotency_key: key } });
      await client.callTool({
        name: 'social_card',
        arguments: { headline: 'Summer sale', idempotency_key: randomUUID() },
      });
    });
    const run = await replay(transcript, [
      '--server',
      quote(proxied(tempDb(), join(tempDir(), 'effects'))),
      '--faults',
      'duplicate,lost-answer,kill-between',
      '--seed',
      '6',
    ]);
    expect(run.code).toBe(0);
    const report = run.report!;
    expect(statusOf(report, 'one-run-per-key')).toBe('held');
    expect(statusOf(report, 'no-acknowledged-run-lost')).toBe('held');
    expect(report.profile.name).toBe('auto: proxy');
    expect(report.tools.find((t) => t.tool === 'social_card')).toMatchObject({
      run_id_field: '_meta.io.runledger/run_id',
      verdict: 'idempotent',
    });
    expect(
      report.calls.filter((c) => c.tool === 'social_card' && c.role === 'retry').every((c) => c.replayed === true),
    ).toBe(true);
  }, 120_000);

  it('says that a changed-args fault it could not run was checked by the transcript’s own changed-arguments call', async () => {
    // Before: "not run: changed-args" and "conflict-refused held" side by side, with nothing to say why.
    const transcript = join(tempDir(), 'extra.jsonl');
    const dir = tempDir();
    await recordSession(transcript, proxied(join(dir, 'ledger.db'), join(dir, 'effects')), async (client) => {
      const key = randomUUID();
      await client.callTool({ name: 'enable_extra', arguments: { idempotency_key: key } });
      await client.callTool({ name: 'enable_extra', arguments: { idempotency_key: key, note: 'again' } });
    });
    const run = await replay(transcript, [
      '--server',
      quote(proxied(tempDb(), join(tempDir(), 'effects'))),
      '--faults',
      'duplicate,changed-args',
      '--seed',
      '7',
    ]);
    expect(run.code).toBe(0);
    expect(statusOf(run.report, 'conflict-refused')).toBe('held');
    expect(run.report!.invariants.find((i) => i.id === 'conflict-refused')!.detail).toMatch(
      /1 changed-arguments retry \(all replayed as recorded, line \d+\)/,
    );
    expect(run.stdout).toMatch(
      /not run: changed-args: .*; the transcript's own changed-arguments call \(line \d+\) was replayed as recorded, and checks the conflict invariants/,
    );
  }, 120_000);
});
