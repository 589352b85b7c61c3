// The seeded plan and the invariants, in process: what they decide from given calls and answers.
import { describe, expect, it } from 'vitest';
import { readAnswer as read, type ToolInfo, type ToolResult } from '../../src/harness/answers.js';
import { defaultConventions } from '../../src/harness/conventions.js';
import type { Exchange } from '../../src/harness/exchange.js';
import { checkInvariants } from '../../src/harness/invariants.js';
import { FAULT_KINDS, LAUNCH_ONLY } from '../../src/harness/options.js';
import {
  changeArgument,
  classify as classifyWith,
  freshKey,
  makePlan as makePlanWith,
  type PlanOptions,
  type Subject,
} from '../../src/harness/plan.js';
import { createPrng } from '../../src/prng.js';
import type { RecordedCall } from '../../src/harness/transcript.js';
import type { Evidence, InvariantId } from '../../src/harness/verdicts.js';

const C = defaultConventions();
const readAnswer = (result: ToolResult) => read(result, C);
const classify = (call: RecordedCall, info: ToolInfo | undefined) => classifyWith(call, info, C);
const makePlan = (
  subjects: readonly Subject[],
  faults: readonly (typeof FAULT_KINDS)[number][],
  options: Partial<PlanOptions> & { seed: number; burst: number; canRestart: boolean },
) => makePlanWith(subjects, faults, { overHttp: true, keyArgument: undefined, ...options });

const CREATE: ToolInfo = {
  name: 'create_thing',
  keyField: 'idempotency_key',
  idempotentHint: true,
  readOnlyHint: false,
  destructiveHint: false,
  properties: { idempotency_key: {}, size: { maximum: 4 }, style: { enum: ['a', 'b'] }, title: { maxLength: 5 } },
};
const TOUCH: ToolInfo = { ...CREATE, name: 'touch', keyField: null, properties: {} };
const READ: ToolInfo = {
  ...CREATE,
  name: 'read',
  keyField: null,
  idempotentHint: undefined,
  readOnlyHint: true,
  properties: {},
};

let seq = 0;
function recorded(
  tool: string,
  args: Record<string, unknown>,
  result: Record<string, unknown> = { content: [], structuredContent: { run_id: `r${seq}` } },
): RecordedCall {
  seq++;
  return { v: 1, type: 'call', seq, line: seq, at: '', ms: 40, tool, arguments: args, outcome: 'answered', result };
}

describe('classify', () => {
  it('gives faults to keyed and idempotentHint calls, and says why every other call gets none', () => {
    expect(classify(recorded('create_thing', { idempotency_key: 'k'.repeat(16) }), CREATE).kind).toBe('keyed');
    expect(classify(recorded('touch', { x: 1 }), TOUCH).kind).toBe('idempotent');
    const plain = (call: RecordedCall, info: ToolInfo | undefined) => classify(call, info).plainBecause;
    expect(plain(recorded('read', {}), READ)).toBe('the tool is read-only');
    expect(plain(recorded('gone', {}), undefined)).toBe('the server does not offer this tool');
    expect(plain(recorded('create_thing', { idempotency_key: 'k', dry_run: true }), CREATE)).toBe(
      'a dry run creates nothing',
    );
    const refused = recorded(
      'create_thing',
      { idempotency_key: 'k' },
      { content: [], isError: true, structuredContent: { error: { code: 'validation_failed' } } },
    );
    expect(plain(refused, CREATE)).toBe('it was refused when recorded');
    expect(plain(recorded('touch', {}), { ...TOUCH, idempotentHint: false })).toMatch(
      /no idempotency key and does not claim idempotentHint/,
    );
  });
});

describe('makePlan', () => {
  const subjects: Subject[] = [
    classify(recorded('create_thing', { idempotency_key: 'key-one-0000000000', title: 'hat' }), CREATE),
    classify(recorded('read', {}), READ),
    classify(recorded('touch', { x: 1 }), TOUCH),
  ];

  it('runs every fault kind at least once and gives every faultable call one, the same for the same seed', () => {
    const plan = makePlan(subjects, FAULT_KINDS, { seed: 5, canRestart: true, burst: 6 });
    expect(new Set(plan.cases.map((c) => c.fault).filter((f) => f !== null))).toEqual(new Set(FAULT_KINDS));
    expect(plan.unused).toEqual([]);
    // Each call has its case in transcript order; a call's further faults follow, each a case of its own.
    expect(plan.cases.slice(0, 3).map((c) => [c.subject.call.tool, c.extra])).toEqual([
      ['create_thing', false],
      ['read', false],
      ['touch', false],
    ]);
    expect(plan.cases[1]!.fault).toBeNull();
    expect(plan.cases.every((c) => c.fault !== 'changed-args' || c.subject.kind === 'keyed')).toBe(true);
    expect(plan.cases.find((c) => c.fault === 'burst')?.copies).toBe(6);
    expect(makePlan(subjects, FAULT_KINDS, { seed: 5, canRestart: true, burst: 6 })).toEqual(plan);
  });

  it('leaves out the SIGKILL faults when it cannot restart the server, and changed arguments without a key, saying why', () => {
    const plan = makePlan(subjects.slice(1), FAULT_KINDS, { seed: 1, canRestart: false, burst: 8 });
    expect(plan.unused.map((u) => u.fault).sort()).toEqual([...LAUNCH_ONLY, 'changed-args'].sort());
    expect(plan.unused.find((u) => u.fault === 'kill-between')?.reason).toMatch(/--server/);
    expect(plan.unused.find((u) => u.fault === 'changed-args')?.reason).toMatch(/idempotency key/);
  });
});

describe('changeArgument', () => {
  it('changes one argument to another valid value: enum, bounded number, bounded string, boolean', () => {
    const change = (args: Record<string, unknown>) =>
      changeArgument({ idempotency_key: 'k', wait_seconds: 5, ...args }, CREATE, 'idempotency_key', createPrng(1));
    expect(change({ style: 'a' })).toEqual({ field: 'style', value: 'b' });
    expect(change({ size: 4 })).toEqual({ field: 'size', value: 3 });
    expect(change({ size: 1 })).toEqual({ field: 'size', value: 2 });
    expect(change({ title: 'hats' })).toEqual({ field: 'title', value: 'hatx' });
    expect(change({ loud: true })).toEqual({ field: 'loud', value: false });
    // The key and the fields that only steer the answer are never what changes.
    expect(change({})).toBeNull();
  });
});

describe('freshKey', () => {
  it('is a UUID, the same for the same seed and key, and another for an extra case', () => {
    const key = freshKey(7, 'recorded-key-000001');
    expect(key).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(freshKey(7, 'recorded-key-000001')).toBe(key);
    expect(freshKey(8, 'recorded-key-000001')).not.toBe(key);
    expect(freshKey(7, 'recorded-key-000001', 3)).not.toBe(key);
  });
});

describe('readAnswer', () => {
  it('finds the run id in structured content or in a JSON text, and tells a refusal from a failed run', () => {
    expect(readAnswer({ content: [{ type: 'text', text: '{"job_id": 12, "status": "done"}' }] })).toMatchObject({
      runId: '12',
      idField: 'job_id',
      phase: 'done',
      refused: false,
    });
    const failed = readAnswer({
      isError: true,
      content: [],
      structuredContent: { run_id: 'r1', phase: 'failed', error: { code: 'generation_failed' } },
    });
    expect(failed).toMatchObject({ refused: false, runId: 'r1', errorCode: 'generation_failed' });
    const refused = readAnswer({
      isError: true,
      content: [],
      structuredContent: { error: { code: 'idempotency_key_reused', details: { run_id: 'r1' } } },
    });
    expect(refused).toMatchObject({ refused: true, runId: undefined, errorCode: 'idempotency_key_reused' });
    expect(readAnswer({ content: [], structuredContent: { widgetId: 'w', replayed: true } }).digest).toBe(
      readAnswer({ content: [], structuredContent: { widgetId: 'w' } }).digest,
    );
  });
});

let exchangeCount = 0;
function ex(
  partial: Partial<Exchange> & { runId?: string; phase?: string; hashes?: string[]; refused?: boolean },
): Exchange {
  const { runId, phase, hashes, refused, ...rest } = partial;
  const answer = readAnswer({
    isError: refused === true,
    content: [],
    structuredContent:
      refused === true
        ? { error: { code: 'refused' } }
        : { run_id: runId, phase, assets: hashes?.map((sha256) => ({ sha256 })) },
  });
  return {
    id: `1.${++exchangeCount}`,
    line: 1,
    fault: 'duplicate',
    tool: 'create_thing',
    role: 'copy',
    group: 'create_thing k',
    key: 'k',
    status: 'answered',
    acknowledged: true,
    answer,
    ms: 1,
    note: undefined,
    progress: 0,
    ...rest,
  };
}

const EVIDENCE: Evidence = {
  exchanges: [],
  conventions: C,
  surface: { poll: undefined, usage: { problem: 'no usage tool: none was found' }, runResource: undefined, notes: {} },
  usageBefore: undefined,
  usageAfter: undefined,
  settled: new Map(),
  resources: new Map(),
  deleted: new Set(),
  settleMs: 60_000,
  lateProgress: [],
  progressSeen: 0,
};
const verdicts = (evidence: Partial<Evidence>) =>
  Object.fromEntries(checkInvariants({ ...EVIDENCE, ...evidence }).map((i) => [i.id, i])) as Record<
    InvariantId,
    ReturnType<typeof checkInvariants>[number]
  >;

describe('checkInvariants', () => {
  it('checks nothing it has no evidence for, and says why', () => {
    const results = verdicts({});
    for (const result of Object.values(results)) expect(result.status).toBe('not-checked');
    expect(results['one-charge-per-run'].detail).toMatch(/no usage tool/);
    expect(results['terminal-within-bound'].detail).toMatch(/no run|no tool follows a run/);
  });

  it('breaks one-run-per-key and same-answer on a second run for a key, naming both calls', () => {
    const first = ex({ runId: 'a' });
    const second = ex({ runId: 'b' });
    const results = verdicts({ exchanges: [first, second] });
    expect(results['one-run-per-key'].violations).toEqual([
      { message: `create_thing key k has 2 runs: a (${first.id}), b (${second.id})`, calls: [first.id, second.id] },
    ]);
    expect(results['same-answer'].violations[0]!.calls).toEqual([first.id, second.id]);
    expect(verdicts({ exchanges: [first, ex({ runId: 'a' })] })['one-run-per-key'].status).toBe('held');
  });

  it('breaks one-run-per-key when get_usage counts more new runs than keys', () => {
    const results = verdicts({
      surface: { ...EVIDENCE.surface, usage: { tool: 'get_usage', runs: true } },
      exchanges: [ex({ runId: 'a' })],
      usageBefore: { runs: 3, charges: 0, byTool: {}, fields: { runs: 'runs', charges: 'charges' } },
      usageAfter: { runs: 5, charges: 0, byTool: {}, fields: { runs: 'runs', charges: 'charges' } },
    });
    expect(results['one-run-per-key'].violations.map((v) => v.message)).toEqual([
      'get_usage counts 2 new runs for 1 key',
    ]);
  });

  it('breaks same-answer when a done run shows other asset hashes, and for a tool without ids when answers differ', () => {
    const results = verdicts({
      exchanges: [
        ex({ runId: 'a', phase: 'done', hashes: ['h1'] }),
        ex({ runId: 'a', phase: 'done', hashes: ['h2'], role: 'poll', group: undefined }),
      ],
    });
    expect(results['same-answer'].violations[0]!.message).toMatch(/run a: 1\.\d+ shows other asset hashes/);
    const idless = (value: number) => ({
      ...ex({}),
      group: 'touch {}',
      answer: readAnswer({ content: [], structuredContent: { value } }),
    });
    expect(verdicts({ exchanges: [idless(1), idless(2)] })['same-answer'].status).toBe('broken');
    expect(verdicts({ exchanges: [idless(1), idless(1)] })['same-answer'].status).toBe('held');
  });

  it('breaks one-charge-per-run on more charges than billed runs, naming the replays, and on a billed run that failed', () => {
    const surface: Evidence['surface'] = {
      ...EVIDENCE.surface,
      usage: { tool: 'get_usage', runs: true },
      runResource: 'runs://{run_id}',
    };
    const [first, replay] = [ex({ runId: 'a', role: 'first' }), ex({ runId: 'a' })];
    const results = verdicts({
      surface,
      exchanges: [first, replay],
      usageBefore: { runs: 0, charges: 0, byTool: {}, fields: { runs: 'runs', charges: 'charges' } },
      usageAfter: { runs: 1, charges: 2, byTool: {}, fields: { runs: 'runs', charges: 'charges' } },
      resources: new Map([['a', { phase: 'done', billed: true }]]),
    });
    expect(results['one-charge-per-run'].violations).toEqual([
      { message: 'get_usage counts 2 new charges for 1 billed run: replays were billed', calls: [replay.id] },
    ]);
    const failed = verdicts({
      surface,
      exchanges: [first],
      usageBefore: { runs: 0, charges: 0, byTool: {}, fields: { runs: 'runs', charges: 'charges' } },
      usageAfter: { runs: 1, charges: 1, byTool: {}, fields: { runs: 'runs', charges: 'charges' } },
      resources: new Map([['a', { phase: 'failed', billed: true }]]),
    });
    expect(failed['one-charge-per-run'].violations[0]!.message).toBe('run a is billed but ended failed (runs://a)');
  });

  it('breaks no-acknowledged-run-lost when poll_run cannot find an acknowledged run, unless the replay deleted it', () => {
    const ack = ex({ runId: 'a' });
    const poll = ex({ refused: true, role: 'poll', group: undefined, id: 'settle.1' });
    expect(
      verdicts({ exchanges: [ack, poll], settled: new Map([['a', poll]]) })['no-acknowledged-run-lost'].violations[0]!
        .calls,
    ).toEqual([ack.id, 'settle.1']);
    expect(
      verdicts({ exchanges: [ack, poll], settled: new Map([['a', poll]]), deleted: new Set(['a']) })[
        'no-acknowledged-run-lost'
      ].status,
    ).toBe('not-checked');
    // An answer the client never took in (aborted, lost) acknowledged nothing.
    const late = ex({ runId: 'b', role: 'late', id: 'late.1' });
    expect(
      verdicts({ exchanges: [ex({ runId: 'a', acknowledged: false }), late] })['no-acknowledged-run-lost'].status,
    ).toBe('not-checked');
    // A last retry that is refused is the key's run gone; one that answers another run is one-run-per-key's
    // finding (the key named two runs), and says nothing about run a being lost.
    const refusedLate = ex({ refused: true, role: 'late', id: 'late.2' });
    expect(verdicts({ exchanges: [ack, refusedLate] })['no-acknowledged-run-lost'].violations[0]!.message).toMatch(
      /run a, acknowledged by 1\.\d+, is lost: the last retry of create_thing key k is refused \(refused\)/,
    );
    const split = verdicts({ exchanges: [ack, late] });
    expect(split['no-acknowledged-run-lost'].status).toBe('not-checked');
    expect(split['one-run-per-key'].status).toBe('broken');
  });

  it('breaks terminal-within-bound for a run still going when the bound passed', () => {
    const surface: Evidence['surface'] = { ...EVIDENCE.surface, poll: 'read' };
    const poll = ex({ runId: 'a', phase: 'rendering', role: 'poll', group: undefined });
    const results = verdicts({ surface, exchanges: [ex({ runId: 'a' }), poll], settled: new Map([['a', poll]]) });
    expect(results['terminal-within-bound'].violations[0]!.message).toBe(
      'run a is still rendering 60 s after the last fault',
    );
  });

  it('breaks the conflict invariants for a changed-arguments retry that was answered, or refused yet counted a run', () => {
    const original = ex({ runId: 'a', role: 'first' });
    const answered = ex({ runId: 'b', role: 'conflict' });
    expect(verdicts({ exchanges: [original, answered] })['conflict-refused'].violations[0]!.calls).toEqual([
      answered.id,
    ]);
    const refused = { ...ex({ refused: true, role: 'conflict' }), runsBefore: 4, runsAfter: 5 };
    const after = ex({ runId: 'c', role: 'retry' });
    const results = verdicts({
      surface: { ...EVIDENCE.surface, usage: { tool: 'get_usage', runs: true } },
      exchanges: [original, refused, after],
    });
    expect(results['conflict-refused'].status).toBe('held');
    expect(results['conflict-created-nothing'].violations.map((v) => v.message)).toEqual([
      `${refused.id} was refused, yet get_usage counted 1 new run(s) across it`,
      `after ${refused.id} was refused, create_thing key k answers run c (${after.id}), not its run a`,
    ]);
  });
});
