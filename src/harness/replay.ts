// `runledger replay FILE`: replays a transcript against a server with faults injected, lets the runs
// settle, retries every key once more, and judges the idempotency invariants. The progress bar goes
// to stderr and the verdict to stdout; exit 0 when nothing broke, 1 when an invariant broke, 2 for
// bad input, 3 when the replay could not run (the server would not start, or died on its own), and
// with --require-all, 4 when nothing broke but some invariant could not be checked.
import { randomInt } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { UsageError } from '../command-line.js';
import { answerAtOnce, isTerminalPhase, keyFieldOf, toolInfo, type ToolInfo } from './answers.js';
import { resolveConventions, type Conventions } from './conventions.js';
import type { Exchange, RunResource } from './exchange.js';
import { runCase, runKillBatch, type CaseContext, type CaseResult } from './faults.js';
import { checkInvariants } from './invariants.js';
import type { ReplayOptions, ReplayTarget } from './options.js';
import { classify, freshKey, makePlan, wasRefused, type Case } from './plan.js';
import { MAX_SEED } from '../prng.js';
import { buildReport, createProgress, formatReport, writeReport } from './report.js';
import { Session } from './session.js';
import { connectTarget, ReplayAborted, type Target } from './target.js';
import { REDACTED, type Transcript, readTranscript } from './transcript.js';
import { runsOf, type Surface } from './verdicts.js';

/** A poll tool whose wait has no stated maximum is asked to wait at most this long at a time. */
const UNBOUNDED_WAIT_SECONDS = 30;
/** Between polls of a tool that cannot wait. */
const POLL_INTERVAL_MS = 25;
/** Late retries and resource reads sent at once. */
const AT_ONCE = 8;

function resolveTarget(options: ReplayOptions, transcript: Transcript): ReplayTarget {
  if (options.target !== undefined) return options.target;
  const command = transcript.command;
  if (command === undefined || command.length === 0) {
    throw new UsageError(
      `${transcript.file} does not say which server it was recorded from; give --server "<command>" or --url`,
    );
  }
  if (command.some((part) => part.includes(REDACTED))) {
    throw new UsageError(
      `the server command recorded in ${transcript.file} has redacted parts; give --server "<command>"`,
    );
  }
  return { kind: 'launch', command, fromTranscript: true, url: undefined, token: undefined };
}

const shellWord = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

function rerunCommand(options: ReplayOptions, target: ReplayTarget, seed: number): string {
  const parts = ['runledger', 'replay', shellWord(options.transcript)];
  if (target.kind === 'launch' && !target.fromTranscript)
    parts.push('--server', shellWord(target.command.map(shellWord).join(' ')));
  if (target.url !== undefined) parts.push('--url', shellWord(target.url.href));
  parts.push('--faults', options.faultsAsked, '--seed', String(seed));
  parts.push('--settle-ms', String(options.settleMs), '--burst', String(options.burst));
  if (options.profileAsked !== undefined) parts.push('--profile', shellWord(options.profileAsked));
  parts.push(...options.conventionArgs.map(shellWord));
  if (options.requireAll) parts.push('--require-all');
  return parts.join(' ');
}

export async function runReplay(options: ReplayOptions): Promise<number> {
  const transcript = readTranscript(options.transcript);
  if (options.report !== undefined) {
    // Found out now rather than after a replay that may take minutes.
    try {
      accessSync(dirname(resolve(options.report)), constants.W_OK);
    } catch {
      throw new UsageError(`--report: cannot write ${options.report}: its directory is missing or read-only`);
    }
  }
  const spec = resolveTarget(options, transcript);
  const seed = options.seed ?? randomInt(0, MAX_SEED);
  let target: Target | undefined;
  try {
    target = await connectTarget(spec);
    return await replay(target, transcript, { options, spec, seed });
  } catch (err) {
    if (!(err instanceof ReplayAborted)) throw err;
    // On a terminal the progress bar holds the line: end it first.
    process.stderr.write(
      `${process.stderr.isTTY === true ? '\n' : ''}runledger replay: could not complete: ${err.message}\n`,
    );
    return 3;
  } finally {
    await target?.close().catch(() => undefined);
  }
}

async function listTools(target: Target): Promise<Tool[]> {
  const tools: Tool[] = [];
  let cursor: string | undefined;
  do {
    const page = await target.client.listTools(cursor === undefined ? {} : { cursor });
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return tools;
}

async function listTemplates(target: Target): Promise<string[]> {
  if (target.client.getServerCapabilities()?.resources === undefined) return [];
  const listed = await target.client.listResourceTemplates().catch(() => ({ resourceTemplates: [] }));
  return listed.resourceTemplates.map((t) => t.uriTemplate);
}

interface ReplaySettings {
  options: ReplayOptions;
  spec: ReplayTarget;
  seed: number;
}

async function replay(
  target: Target,
  transcript: Transcript,
  { options, spec, seed }: ReplaySettings,
): Promise<number> {
  const started = performance.now();
  const listed = await listTools(target);
  const serverInfo = target.client.getServerVersion();
  const conventions = resolveConventions(options.profile, options.profileFlags, {
    serverName: serverInfo?.name,
    tools: listed,
    resourceTemplates: await listTemplates(target),
  });
  const tools = new Map(listed.map((tool) => [tool.name, toolInfo(tool, conventions.keyArgument)]));
  const session = new Session(target, tools, conventions);
  const subjects = transcript.calls.map((call) => classify(call, tools.get(call.tool), conventions));
  const plan = makePlan(subjects, options.faults, {
    seed,
    canRestart: target.canRestart,
    overHttp: target.http !== undefined,
    burst: options.burst,
    keyArgument: conventions.keyArgument,
  });

  // Recorded keys get fresh ones, the same for every call that used them, so the recorded session's
  // own retries stay retries. A key seen only in refused calls stays as it was: so does its refusal.
  const substitutions = new Map<string, string>();
  for (const subject of subjects) {
    const keyField = keyFieldOf(subject.info, subject.call.arguments, conventions.keyArgument);
    if (keyField === null || wasRefused(subject.call, conventions)) continue;
    const key = subject.call.arguments[keyField] as string;
    substitutions.set(key, freshKey(seed, key));
  }

  const batches = new Map<number, Case[]>();
  for (const c of plan.cases) if (c.batch !== null) batches.set(c.batch, [...(batches.get(c.batch) ?? []), c]);
  const progress = createProgress(plan.cases.length - [...batches.values()].flat().length + batches.size + 3);
  const context: CaseContext = { session, seed, settleMs: options.settleMs, substitutions };
  const check = (where: string) => {
    if (target.failure !== undefined) throw new ReplayAborted(`${target.failure}\n(${where})`);
  };
  const usageBefore = await session.usage();
  const results: CaseResult[] = [];
  for (const c of plan.cases) {
    if (c.batch !== null) continue;
    progress.step(`case ${c.n}: ${c.fault ?? 'replayed'} ${c.subject.call.tool}`);
    results.push(await runCase(c, context));
    check(`during case ${c.n}, transcript line ${c.subject.call.line}`);
  }

  const deleted = deletedRuns(session.exchanges, tools);
  const settler = new Settler(session, options.settleMs);
  if (batches.size > 0 && conventions.poll !== undefined) {
    // The runs so far, followed to their end, time this server's runs: a mid-run SIGKILL is aimed by them.
    await settler.settle(runsOf({ exchanges: session.exchanges, deleted }));
  }
  for (const [n, cases] of batches) {
    progress.step(`restart ${n}: ${cases.map((c) => `${c.fault} ${c.subject.call.tool}`).join(', ')}`);
    results.push(...(await runKillBatch(cases, context)));
    check(`after restart ${n}, cases ${cases.map((c) => c.n).join(', ')}`);
  }

  progress.step(
    conventions.poll === undefined ? 'no poll tool: runs cannot be followed' : 'waiting for every run to end',
  );
  const settled = await settler.settle(runsOf({ exchanges: session.exchanges, deleted }));
  progress.step('retrying every key once more');
  await lateRetries(session, tools, Date.now() + options.settleMs);
  progress.step('checking the invariants');
  const resources = new Map<string, RunResource>();
  await inBatches(runsOf({ exchanges: session.exchanges, deleted }), async (runId) => {
    const resource = await session.runResource(runId);
    if (resource !== undefined) resources.set(runId, resource);
  });
  const usageAfter = await session.usage();
  check('while checking the invariants');
  progress.done();
  results.sort((a, b) => a.case.n - b.case.n);

  const invariants = checkInvariants({
    exchanges: session.exchanges,
    conventions,
    surface: surfaceOf(conventions, session, usageBefore !== undefined && usageAfter !== undefined),
    usageBefore,
    usageAfter,
    settled,
    resources,
    deleted,
    settleMs: options.settleMs,
    lateProgress: session.lateProgress,
    progressSeen: session.progressSeen,
  });
  // Not run as a fault, yet checked all the same: the transcript's own changed-arguments calls.
  const recordedConflicts = [
    ...new Set(
      session.exchanges.filter((e) => e.role === 'conflict' && e.fault === null && e.line !== null).map((e) => e.line),
    ),
  ];
  const changedArgs = plan.unused.find((u) => u.fault === 'changed-args');
  if (changedArgs !== undefined && recordedConflicts.length > 0) {
    changedArgs.reason += `; the transcript's own changed-arguments call (line ${recordedConflicts.join(', ')}) was replayed as recorded, and checks the conflict invariants`;
  }
  const report = buildReport({
    transcript: transcript.file,
    target: target.label,
    server: serverInfo === undefined ? transcript.server : { name: serverInfo.name, version: serverInfo.version },
    seed,
    rerun: rerunCommand(options, spec, seed),
    durationMs: performance.now() - started,
    requested: options.faults,
    plan,
    results,
    exchanges: session.exchanges,
    invariants,
    tools,
    conventions,
    usageFields: session.usageFields,
    requireAll: options.requireAll,
  });
  process.stdout.write(formatReport(report));
  if (options.report !== undefined) writeReport(options.report, report);
  const broken = invariants.filter((i) => i.status === 'broken').map((i) => i.id);
  if (broken.length > 0) {
    process.stderr.write(`runledger replay: broken: ${broken.join(', ')}\n`);
    return 1;
  }
  if (report.verdict === 'incomplete') {
    const unchecked = invariants.filter((i) => i.status === 'not-checked').map((i) => i.id);
    process.stderr.write(`runledger replay: not checked (--require-all): ${unchecked.join(', ')}\n`);
    return 4;
  }
  return 0;
}

function surfaceOf(conventions: Conventions, session: Session, usageRead: boolean): Surface {
  const { usage, found } = conventions;
  let usageSurface: Surface['usage'];
  if (usage === undefined) usageSurface = { problem: `no usage tool: ${found.usage.note ?? 'none was found'}` };
  else if (!usageRead) usageSurface = { problem: session.usageProblem ?? `${usage.tool} could not be read` };
  else usageSurface = { tool: usage.tool, runs: session.usageFields?.runs !== undefined };
  return {
    poll: conventions.poll?.tool,
    usage: usageSurface,
    runResource: conventions.runResource?.template,
    notes: { poll: found.poll.note },
  };
}

/** Runs the replay deleted on purpose (a destructive tool answered for them): gone by design. */
function deletedRuns(exchanges: readonly Exchange[], tools: ReadonlyMap<string, ToolInfo>): Set<string> {
  const deleted = new Set<string>();
  for (const e of exchanges) {
    if (
      tools.get(e.tool)?.destructiveHint === true &&
      e.answer !== undefined &&
      !e.answer.refused &&
      e.answer.runId !== undefined
    ) {
      deleted.add(e.answer.runId);
    }
  }
  return deleted;
}

/** Follows runs until they end or the bound passes; keeps each run's last poll, by run id. */
class Settler {
  private readonly settled = new Map<string, Exchange>();
  private readonly deadline: number;
  private n = 0;

  constructor(
    private readonly session: Session,
    settleMs: number,
  ) {
    this.deadline = Date.now() + settleMs;
  }

  async settle(runIds: string[]): Promise<Map<string, Exchange>> {
    const { session } = this;
    const poll = session.conventions.poll;
    if (poll === undefined) return this.settled;
    await Promise.all(
      runIds.map(async (runId) => {
        const last = this.settled.get(runId);
        if (
          last?.answer !== undefined &&
          (last.answer.refused ||
            last.answer.phase === undefined ||
            isTerminalPhase(last.answer.phase, session.conventions))
        )
          return;
        for (;;) {
          const remaining = Math.max(0, Math.floor((this.deadline - Date.now()) / 1000));
          const wait = Math.min(remaining, poll.waitMax ?? UNBOUNDED_WAIT_SECONDS);
          const exchange = await session.send({
            id: `settle.${++this.n}`,
            line: null,
            fault: null,
            tool: poll.tool,
            args: session.pollArguments(runId, wait),
            role: 'poll',
          });
          this.settled.set(runId, exchange);
          const answer = exchange.answer;
          if (answer !== undefined && isTerminalPhase(answer.phase, session.conventions)) session.ended(runId);
          // No status to wait on is an end too: the run cannot be seen to go on.
          if (
            answer === undefined ||
            answer.refused ||
            answer.phase === undefined ||
            isTerminalPhase(answer.phase, session.conventions) ||
            Date.now() >= this.deadline
          )
            return;
          if (poll.waitArgument === undefined || wait === 0) await sleep(POLL_INTERVAL_MS);
        }
      }),
    );
    return this.settled;
  }
}

/**
 * Each group's request once more, after the runs settled: the answer a late retry gets. Without a
 * poll tool, the retry is how a run is followed: a key whose run has not ended is retried again,
 * backing off, until it has or the bound passes.
 */
async function lateRetries(session: Session, tools: ReadonlyMap<string, ToolInfo>, deadline: number): Promise<void> {
  // Deleting again proves nothing about the deleted run, and may be refused by design.
  const firsts = [...session.firstRequests().values()].filter(
    (first) => tools.get(first.tool)?.destructiveHint !== true,
  );
  const follow = session.conventions.poll === undefined;
  let n = 0;
  await inBatches(firsts, async (first) => {
    for (let pause = POLL_INTERVAL_MS; ; pause = Math.min(pause * 2, 1000)) {
      const late = await session.send({
        id: `late.${++n}`,
        line: first.line,
        fault: null,
        tool: first.tool,
        args: answerAtOnce(first.args),
        role: 'late',
      });
      const phase = late.answer?.refused === false ? late.answer.phase : undefined;
      if (!follow || phase === undefined || isTerminalPhase(phase, session.conventions) || Date.now() >= deadline)
        return;
      await sleep(pause);
    }
  });
}

/** `work` for every item, AT_ONCE of them at a time. */
async function inBatches<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, items.length) }, worker));
}
