// Target profiles and the reading of answers through them, in process: what is detected from
// tools/list, what a profile file or the flags say, and how answers, refusals and bills are read.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { readAnswer, readUsage } from '../../src/harness/answers.js';
import { defaultConventions, resolveConventions } from '../../src/harness/conventions.js';
import { parseField } from '../../src/harness/fields.js';
import { loadProfile, type ProfileFlags } from '../../src/harness/profile.js';
import { tempDir } from '../helpers/harness.js';

const tool = (name: string, properties: Record<string, object> = {}, extra: Partial<Tool> = {}): Tool => ({
  name,
  inputSchema: { type: 'object', properties, required: Object.keys(properties).slice(0, 1) },
  ...extra,
});
const readOnly = { annotations: { readOnlyHint: true } };
const resolve = (tools: Tool[], flags: ProfileFlags = {}, serverName?: string, profile = 'auto') =>
  resolveConventions(loadProfile(profile), flags, { serverName, tools, resourceTemplates: [] });

describe('detecting conventions from tools/list', () => {
  it('finds a poll tool by its look, with its id argument and the maximum of its wait', () => {
    const c = resolve([
      tool('submit_render', { request_token: { type: 'string' } }),
      tool('get_render', { render_id: { type: 'string' }, wait: { type: 'integer', maximum: 5 } }, readOnly),
      tool('billing_summary', {}, readOnly),
    ]);
    expect(c.poll).toEqual({
      tool: 'get_render',
      argument: 'render_id',
      argumentType: 'string',
      waitArgument: 'wait',
      waitMax: 5,
    });
    expect(c.usage?.tool).toBe('billing_summary');
    expect(c.found.poll.from).toBe('detected');
    expect(resolve([tool('getRun', { runId: { type: 'string' } })]).poll?.tool).toBe('getRun');
    expect(resolve([tool('check_task', { task_id: { type: 'integer' } }, readOnly)]).poll).toMatchObject({
      argument: 'task_id',
      argumentType: 'integer',
      waitArgument: undefined,
    });
  });

  it('guesses neither a mutating tool nor between two that could poll, and says why', () => {
    expect(resolve([tool('cancel_job', { job_id: { type: 'string' } })]).found.poll).toMatchObject({ from: 'missing' });
    const two = resolve([tool('get_job', { job_id: {} }, readOnly), tool('get_task', { task_id: {} }, readOnly)]);
    expect(two.poll).toBeUndefined();
    expect(two.found.poll.note).toMatch(/several tools could follow a run \(get_job, get_task\): name one/);
  });

  it('takes runledger’s and the proxy’s built-in profiles from the server’s name', () => {
    const runledger = resolve(
      [
        tool('poll_run', { run_id: {}, wait_seconds: { type: 'integer', maximum: 50 } }, readOnly),
        tool('get_usage', {}, readOnly),
      ],
      {},
      'runledger',
    );
    expect(runledger.profile).toBe('auto: runledger');
    expect(runledger.poll).toMatchObject({ tool: 'poll_run', waitMax: 50 });
    expect([...runledger.done]).toEqual(['done']);
    const proxy = resolve([], {}, 'runledger-proxy(tickets)');
    expect(proxy.runId.map((p) => p.text)).toEqual(['_meta.io.runledger/run_id']);
    expect(proxy.runIdNamed).toBe(true);
  });

  it('lets flags override a profile, and says when a profile names a tool the server lacks', () => {
    const flags: ProfileFlags = {
      pollTool: 'lookup',
      pollArgument: 'ref',
      usageTool: 'meter',
      usageCharges: 'n_billed',
      keyArgument: 'request_token',
    };
    const c = resolve([tool('lookup', { ref: {} }, readOnly), tool('meter', {}, readOnly)], flags);
    expect([c.poll?.tool, c.poll?.argument, c.usage?.tool, c.usage?.charges?.text, c.keyArgument]).toEqual([
      'lookup',
      'ref',
      'meter',
      'n_billed',
      'request_token',
    ]);
    expect(c.found.poll.from).toBe('flag');
    const lacking = resolve([], {}, undefined, 'runledger');
    expect(lacking.poll).toBeUndefined();
    expect(lacking.found.poll.note).toBe('the profile names poll tool poll_run, which the server does not offer');
  });
});

describe('profile files and flags', () => {
  const file = (content: string) => {
    const path = join(tempDir(), 'profile.json');
    writeFileSync(path, content);
    return path;
  };

  it('reads a profile file, one field or a list of them', () => {
    const choice = loadProfile(
      file(JSON.stringify({ name: 'jobs', run_id: ['job.id', '_meta.com.example/job'], done_words: ['ready'] })),
    );
    expect(choice).toMatchObject({ kind: 'file', profile: { name: 'jobs' } });
    const c = resolveConventions(choice, {}, { serverName: undefined, tools: [], resourceTemplates: [] });
    expect(c.runId).toEqual([
      parseField('job.id'),
      { text: '_meta.com.example/job', meta: true, steps: ['com.example/job'] },
    ]);
    expect(c.done.has('ready')).toBe(true);
  });

  it.each([
    ['{"poll": {"tool": "x"}}', /profile .*: "poll\.argument" /],
    ['{"pol": {}}', /profile .*: has no field "pol" \(runledger replay --profile-schema prints what a profile holds\)/],
    [
      '{"run_resource": {"template": "runs://x"}}',
      /"run_resource\.template" must hold one \{variable\} for the run id/,
    ],
    ['not json', /--profile ".*" is not auto, runledger, proxy or a readable JSON file/],
  ])('refuses %s with a message that names the field', (content, message) => {
    expect(() => loadProfile(file(content))).toThrow(message);
  });

  it('refuses a poll argument without a poll tool to go with it', () => {
    expect(() => resolve([], { pollArgument: 'id' })).toThrow(
      /--poll-argument and --poll-wait-argument go with --poll-tool NAME/,
    );
    expect(() => resolve([], { pollTool: 'x' })).toThrow(/--poll-tool needs --poll-argument NAME/);
  });
});

describe('reading answers', () => {
  const c = defaultConventions();

  it('reads a refusal that names the run holding the key as a refusal, and a failed run’s answer as the run', () => {
    const refusal = readAnswer(
      {
        isError: true,
        content: [{ type: 'text', text: '{"error":{"code":"idempotency_key_reused"},"existing_run_id":"r1"}' }],
      },
      c,
    );
    expect(refusal).toMatchObject({ refused: true, runId: undefined, errorCode: 'idempotency_key_reused' });
    // Even a run_id, without the run's status, is the run a refusal points at.
    expect(
      readAnswer({ isError: true, structuredContent: { run_id: 'r1', error: { code: 'conflict' } } }, c).refused,
    ).toBe(true);
    expect(readAnswer({ isError: true, structuredContent: { run_id: 'r1', phase: 'failed' } }, c)).toMatchObject({
      refused: false,
      runId: 'r1',
      phase: 'failed',
    });
  });

  it('reads the proxy’s _meta marks, for any upstream answer, an upstream error included', () => {
    const meta = { 'io.runledger/run_id': 'run_1', 'io.runledger/replayed': true };
    expect(readAnswer({ content: [{ type: 'text', text: 'posted' }], _meta: meta }, c)).toMatchObject({
      runId: 'run_1',
      idField: '_meta.io.runledger/run_id',
      replayed: true,
    });
    expect(readAnswer({ isError: true, content: [{ type: 'text', text: 'declined' }], _meta: meta }, c)).toMatchObject({
      refused: false,
      runId: 'run_1',
    });
  });

  it('finds JSON in a text block beside other blocks, and reads a status only when it is a run’s word', () => {
    const result = {
      content: [
        { type: 'image', data: '', mimeType: 'image/png' },
        { type: 'text', text: ' {"job": {"id": 7, "state": "running"}}' },
      ],
    };
    expect(readAnswer(result, c)).toMatchObject({ runId: '7', idField: 'job.id', phase: 'running' });
    expect(readAnswer({ structuredContent: { ticket_id: 't1', status: 'closed' } }, c)).toMatchObject({
      runId: 't1',
      phase: undefined,
    });
  });

  it('reads a bill from a JSON text block, by the fields named or by ones named like counts, and says why not', () => {
    const usage = { tool: 'get_usage', runs: undefined, charges: undefined, byTool: undefined };
    expect(readUsage({ content: [{ type: 'text', text: '{"jobs_created": 3, "charged": 2}' }] }, usage)).toMatchObject({
      runs: 3,
      charges: 2,
      fields: { runs: 'jobs_created', charges: 'charged' },
    });
    expect(
      readUsage(
        { content: [{ type: 'text', text: '{"renders": 3, "billed": 2}' }] },
        { ...usage, runs: parseField('renders') },
      ),
    ).toMatchObject({ runs: 3, charges: 2 });
    expect(readUsage({ content: [{ type: 'text', text: '{"renders": 3}' }] }, usage)).toEqual({
      problem: 'get_usage: no field of its answer is named like a count of charges',
    });
    expect(readUsage({ content: [{ type: 'text', text: '3 runs' }] }, usage)).toEqual({
      problem: 'get_usage answered no JSON (neither structuredContent nor a JSON text block)',
    });
  });
});
