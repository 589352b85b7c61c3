// `runledger replay FILE`: replays a transcript against a server with faults injected, lets the runs
// settle, retries every key once more, and judges the idempotency invariants. The progress bar goes
// to stderr and the verdict to stdout; exit 0 when nothing broke, 1 when an invariant broke, 2 for
// bad input, 3 when the replay could not run (the server would not start, or died on its own).
import { randomInt } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { UsageError } from '../config.js';
import { MAX_SEED } from '../compose/prng.js';
import { answerAtOnce, isTerminalPhase, toolInfo, type ToolInfo } from './answers.js';
import { runCase, type CaseContext, type CaseResult } from './faults.js';
import { checkInvariants, runsOf } from './invariants.js';
import { flagValue, type ReplayOptions, type ReplayTarget } from './options.js';
import { classify, freshKey, keyFieldOf, makePlan, wasRefused } from './plan.js';
import { buildReport, createProgress, formatReport, writeReport } from './report.js';
import { Session, type Exchange, type RunResource, type Surface } from './session.js';
import { connectTarget, ReplayAborted, type Target } from './target.js';
import { readTranscript, REDACTED, type Transcript } from './transcript.js';

const MAX_WAIT_SECONDS = 50;

function resolveTarget(options: ReplayOptions, transcript: Transcript): ReplayTarget {
  if (options.target !== undefined) return options.target;
  const command = transcript.command;
  if (command === undefined || command.length === 0) {
    throw new UsageError(`${transcript.file} does not say which server it was recorded from; give --server "<command>" or --url`);
  }
  if (command.some((part) => part.includes(REDACTED))) {
    throw new UsageError(`the server command recorded in ${transcript.file} has redacted parts; give --server "<command>"`);
  }
  return { kind: 'launch', command, fromTranscript: true };
}

const shellWord = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

function rerunCommand(options: ReplayOptions, target: ReplayTarget, seed: number): string {
  const parts = ['runledger', 'replay', shellWord(options.transcript)];
  if (target.kind === 'url') parts.push('--url', shellWord(target.url.href));
  else if (!target.fromTranscript) parts.push('--server', shellWord(target.command.map(shellWord).join(' ')));
  parts.push('--faults', options.faultsAsked, '--seed', String(seed));
  if (options.phaseDelayMs !== undefined) parts.push('--phase-delay-ms', String(options.phaseDelayMs));
  parts.push('--settle-ms', String(options.settleMs), '--burst', String(options.burst));
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
  const serverPhaseDelay = spec.kind === 'launch' ? Number(flagValue(spec.command, '--phase-delay-ms')) : NaN;
  const phaseDelayMs = options.phaseDelayMs ?? (Number.isFinite(serverPhaseDelay) ? serverPhaseDelay : 0);
  let target: Target | undefined;
  try {
    target = await connectTarget(spec);
    return await replay(target, transcript, { options, spec, seed, phaseDelayMs });
  } catch (err) {
    if (!(err instanceof ReplayAborted)) throw err;
    // On a terminal the progress bar holds the line: end it first.
    process.stderr.write(`${process.stderr.isTTY === true ? '\n' : ''}runledger replay: could not complete: ${err.message}\n`);
    return 3;
  } finally {
    await target?.close().catch(() => undefined);
  }
}

async function listTools(target: Target): Promise<Map<string, ToolInfo>> {
  const tools = new Map<string, ToolInfo>();
  let cursor: string | undefined;
  do {
    const page = await target.client.listTools(cursor === undefined ? {} : { cursor });
    for (const tool of page.tools) tools.set(tool.name, toolInfo(tool));
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return tools;
}

async function discoverSurface(target: Target, tools: ReadonlyMap<string, ToolInfo>): Promise<Surface> {
  const poll = tools.get('poll_run');
  let runResources = false;
  if (target.client.getServerCapabilities()?.resources !== undefined) {
    const templates = await target.client.listResourceTemplates().catch(() => ({ resourceTemplates: [] }));
    runResources = templates.resourceTemplates.some((t) => t.uriTemplate === 'runs://{run_id}');
  }
  return { poll: poll !== undefined && 'run_id' in poll.properties ? poll : undefined, usage: tools.get('get_usage'), runResources };
}

interface ReplaySettings {
  options: ReplayOptions;
  spec: ReplayTarget;
  seed: number;
  phaseDelayMs: number;
}

async function replay(target: Target, transcript: Transcript, { options, spec, seed, phaseDelayMs }: ReplaySettings): Promise<number> {
  const started = performance.now();
  const tools = await listTools(target);
  const surface = await discoverSurface(target, tools);
  const session = new Session(target, tools, surface);
  const subjects = transcript.calls.map((call) => classify(call, tools.get(call.tool)));
  const plan = makePlan(subjects, options.faults, { seed, canRestart: target.canRestart, burst: options.burst });

  // Recorded keys get fresh ones, the same for every call that used them, so the recorded session's
  // own retries stay retries. A key seen only in refused calls stays as it was: so does its refusal.
  const substitutions = new Map<string, string>();
  for (const subject of subjects) {
    const keyField = keyFieldOf(subject.info, subject.call.arguments);
    if (keyField === null || wasRefused(subject.call)) continue;
    const key = subject.call.arguments[keyField] as string;
    substitutions.set(key, freshKey(seed, key));
  }

  const progress = createProgress(plan.cases.length + 3);
  const context: CaseContext = { session, seed, phaseDelayMs, settleMs: options.settleMs, substitutions };
  const usageBefore = await session.usage();
  const results: CaseResult[] = [];
  for (const c of plan.cases) {
    progress.step(`case ${c.n}: ${c.fault ?? 'replayed'} ${c.subject.call.tool}`);
    results.push(await runCase(c, context));
    if (target.failure !== undefined) throw new ReplayAborted(`${target.failure}\n(during case ${c.n}, transcript line ${c.subject.call.line})`);
  }

  const deleted = deletedRuns(session.exchanges, tools);
  progress.step(surface.poll === undefined ? 'no poll_run: runs cannot be followed' : 'waiting for every run to end');
  const settled = await settle(session, runsOf({ exchanges: session.exchanges, deleted }), options.settleMs);
  progress.step('retrying every key once more');
  await lateRetries(session, tools);
  progress.step('checking the invariants');
  const resources = new Map<string, RunResource>();
  for (const runId of runsOf({ exchanges: session.exchanges, deleted })) {
    const resource = await session.runResource(runId);
    if (resource !== undefined) resources.set(runId, resource);
  }
  const usageAfter = await session.usage();
  if (target.failure !== undefined) throw new ReplayAborted(target.failure);
  progress.done();

  const serverInfo = target.client.getServerVersion();
  const invariants = checkInvariants({ exchanges: session.exchanges, surface, usageBefore, usageAfter, settled, resources, deleted, settleMs: options.settleMs });
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
    surface,
  });
  process.stdout.write(formatReport(report));
  if (options.report !== undefined) writeReport(options.report, report);
  const broken = invariants.filter((i) => i.status === 'broken').map((i) => i.id);
  if (broken.length > 0) process.stderr.write(`runledger replay: broken: ${broken.join(', ')}\n`);
  return broken.length > 0 ? 1 : 0;
}

/** Runs the replay deleted on purpose (a destructive tool answered for them): gone by design. */
function deletedRuns(exchanges: readonly Exchange[], tools: ReadonlyMap<string, ToolInfo>): Set<string> {
  const deleted = new Set<string>();
  for (const e of exchanges) {
    if (tools.get(e.tool)?.destructiveHint === true && e.answer !== undefined && !e.answer.refused && e.answer.runId !== undefined) {
      deleted.add(e.answer.runId);
    }
  }
  return deleted;
}

/** Follows every run until it ends or the bound passes; the last poll of each run, by run id. */
async function settle(session: Session, runIds: string[], settleMs: number): Promise<Map<string, Exchange>> {
  const settled = new Map<string, Exchange>();
  const poll = session.surface.poll;
  if (poll === undefined) return settled;
  const deadline = Date.now() + settleMs;
  let n = 0;
  await Promise.all(
    runIds.map(async (runId) => {
      for (;;) {
        const waitSeconds = Math.max(0, Math.min(MAX_WAIT_SECONDS, Math.floor((deadline - Date.now()) / 1000)));
        const args = 'wait_seconds' in poll.properties ? { run_id: runId, wait_seconds: waitSeconds } : { run_id: runId };
        const last = await session.send({ id: `settle.${++n}`, line: null, fault: null, tool: poll.name, args, role: 'poll' });
        settled.set(runId, last);
        if (last.answer === undefined || last.answer.refused || isTerminalPhase(last.answer.phase) || Date.now() >= deadline) return;
        if (!('wait_seconds' in poll.properties)) await sleep(100);
      }
    }),
  );
  return settled;
}

/** Each group's request once more, after the runs settled: the answer a late retry gets. */
async function lateRetries(session: Session, tools: ReadonlyMap<string, ToolInfo>): Promise<void> {
  let n = 0;
  for (const [, first] of session.firstRequests()) {
    // Deleting again proves nothing about the deleted run, and may be refused by design.
    if (tools.get(first.tool)?.destructiveHint === true) continue;
    await session.send({ id: `late.${++n}`, line: first.line, fault: null, tool: first.tool, args: answerAtOnce(first.args), role: 'late' });
  }
}
