// Runs the plan's cases: a recorded call sent under its fault. The SIGKILL cases of one batch run
// together around a single restart of the server.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { answerAtOnce, isTerminalPhase, keyFieldOf } from './answers.js';
import type { Exchange, Role } from './exchange.js';
import { mapStrings, type JsonObject } from './json.js';
import { freshKey, type Case } from './plan.js';
import type { SendOptions, Session } from './session.js';

export interface CaseContext {
  session: Session;
  seed: number;
  settleMs: number;
  /**
   * Recorded values and what stands for them in this replay: each recorded key and its fresh key,
   * and each recorded run id and the run id the replay got for the same call.
   */
  substitutions: Map<string, string>;
}

export interface CaseResult {
  case: Case;
  notes: string[];
}

const round = (ms: number) => Math.round(ms);

/** A case's calls: its arguments with this replay's keys and run ids, and a sender that numbers them. */
function caseCalls(c: Case, ctx: CaseContext) {
  const { session } = ctx;
  const { call } = c.subject;
  const args = mapStrings(call.arguments, (text) => ctx.substitutions.get(text) ?? text) as JsonObject;
  const keyField = keyFieldOf(c.subject.info, call.arguments, session.conventions.keyArgument);
  if (c.extra && keyField !== null) args[keyField] = freshKey(ctx.seed, call.arguments[keyField] as string, c.n);
  let count = 0;
  const sent: Exchange[] = [];
  const send = async (role: Role, request: JsonObject = args, options?: SendOptions) => {
    // Numbered as sent, not as answered: a burst's copies are all in flight at once.
    const exchange = await session.send(
      { id: `${c.n}.${++count}`, line: call.line, fault: c.fault, tool: call.tool, args: request, role },
      options,
    );
    sent.push(exchange);
    return exchange;
  };
  return { args, send, sent };
}

/** A share of this replay's answer time for the tool, and how the report says it. */
function aim(c: Case, session: Session): { ms: number; how: string } {
  const answerMs = session.answerTime(c.subject.call.tool);
  if (answerMs === undefined) return { ms: 0, how: 'at once (no answer of this tool in this replay to time it by)' };
  return {
    ms: c.aimAt * answerMs,
    how: `at ${round(c.aimAt * answerMs)} ms, ${c.aimAt} of the ${round(answerMs)} ms this replay's answers took`,
  };
}

export async function runCase(c: Case, ctx: CaseContext): Promise<CaseResult> {
  const notes: string[] = [];
  const { args, send, sent } = caseCalls(c, ctx);

  switch (c.fault) {
    case null:
      await send('call');
      break;
    case 'duplicate':
      await send('first');
      for (let i = 1; i < c.copies; i++) await send('copy');
      break;
    case 'burst':
      await Promise.all(Array.from({ length: c.copies }, () => send('copy')));
      break;
    case 'timeout': {
      const { ms, how } = aim(c, ctx.session);
      notes.push(`timeout ${how}`);
      await send('first', args, { timeoutMs: ms });
      await send('retry');
      break;
    }
    case 'cancel': {
      // A tool that reports progress is cancelled once it has (the server has visibly started the
      // work); one that does not, a share of its answer time in.
      if (ctx.session.exchanges.some((e) => e.tool === c.subject.call.tool && e.progress > 0)) {
        notes.push('notifications/cancelled on its first progress notification');
        await send('first', args, { cancel: { afterMs: undefined } });
      } else {
        const { ms, how } = aim(c, ctx.session);
        notes.push(`notifications/cancelled ${how} (the tool reported no progress in this replay)`);
        await send('first', args, { cancel: { afterMs: ms } });
      }
      await send('retry');
      break;
    }
    case 'stream-broken': {
      const { ms, how } = aim(c, ctx.session);
      notes.push(`response stream broken on its first event, else ${how}; re-issued as a new request`);
      await send('first', args, { breakAfterMs: ms });
      await send('retry');
      break;
    }
    case 'lost-answer':
      await send('first', args, { lose: true });
      await send('retry');
      break;
    case 'changed-args': {
      const first = await send('first');
      const changed = c.changed!;
      const conflict = await send('retry', { ...args, [changed.field]: changed.value });
      if (conflict.role !== 'conflict')
        notes.push(
          `the first request was refused (${first.answer?.errorCode ?? first.status}), so changing ${changed.field} was no conflict`,
        );
      else notes.push(`retried with ${changed.field} changed`);
      await send('retry');
      break;
    }
    case 'kill-between':
    case 'kill-mid-run':
      throw new Error(`case ${c.n}: SIGKILL cases run in batches (runKillBatch)`);
  }

  // Later recorded calls name the recorded run id (a poll, a cancel): give them this replay's.
  const recordedRunId =
    c.subject.call.result === undefined ? undefined : ctx.session.readAnswer(c.subject.call.result).runId;
  const replayedRunId = sent.find((e) => e.answer?.runId !== undefined)?.answer?.runId;
  if (!c.extra && recordedRunId !== undefined && replayedRunId !== undefined && !ctx.substitutions.has(recordedRunId)) {
    ctx.substitutions.set(recordedRunId, replayedRunId);
  }
  return { case: c, notes };
}

/**
 * The SIGKILL cases of one batch around one restart. The kill-between calls are answered first; the
 * kill-mid-run ones are then sent together and struck at once: inside their runs when the server
 * follows runs with a poll tool (aimed by this replay's own run times), else inside the calls
 * themselves (aimed by its answer times). One SIGKILL, one restart, and every case's retry.
 */
export async function runKillBatch(cases: readonly Case[], ctx: CaseContext): Promise<CaseResult[]> {
  const { session } = ctx;
  const running = cases.map((c) => ({
    c,
    notes: [] as string[],
    calls: caseCalls(c, ctx),
    first: undefined as Promise<Exchange> | undefined,
  }));
  const between = running.filter((r) => r.c.fault === 'kill-between');
  const midRun = running.filter((r) => r.c.fault === 'kill-mid-run');

  await Promise.all(between.map((r) => (r.first = r.calls.send('first'))));

  const poll = session.conventions.poll;
  // A tool whose answers already end their runs has nothing to kill inside a run: kill inside the call.
  const insideRun = (tool: string) =>
    poll !== undefined &&
    session.exchanges.some(
      (e) =>
        e.tool === tool &&
        e.answer?.runId !== undefined &&
        e.answer.phase !== undefined &&
        !isTerminalPhase(e.answer.phase, session.conventions),
    );
  const inRuns = midRun.filter((r) => insideRun(r.c.subject.call.tool));
  const inCalls = midRun.filter((r) => !insideRun(r.c.subject.call.tool));

  const answered = await Promise.all(
    inRuns.map(async (r) => (r.first = Promise.resolve(await r.calls.send('first', answerAtOnce(r.calls.args))))),
  );
  const killAt = await aimInsideRuns(inRuns, answered, ctx);

  const sentAt = performance.now();
  for (const r of inCalls) r.first = r.calls.send('first');
  if (inCalls.length > 0) {
    const aims = inCalls.map((r) => aim(r.c, session));
    const wait = Math.min(...aims.map((a) => a.ms));
    inCalls.forEach((r, i) => r.notes.push(`SIGKILL inside the call, ${aims[i]!.how}`));
    await sleep(Math.max(0, sentAt + wait - performance.now()));
  } else if (killAt !== undefined) {
    await sleep(Math.max(0, killAt - performance.now()));
  }
  for (const r of inRuns) r.notes.push(await whereKillLanded(r, session));

  await session.target.restart();
  const together = cases.length > 1 ? ` (one restart for cases ${cases.map((c) => c.n).join(', ')})` : '';
  for (const r of running) {
    const first = await r.first!;
    r.notes.push(
      first.answer?.runId !== undefined
        ? `server SIGKILLed and restarted after run ${first.answer.runId} was answered${together}`
        : `server SIGKILLed and restarted${together}`,
    );
  }
  await Promise.all(running.map((r) => r.calls.send('retry')));
  return running.map((r) => ({ case: r.c, notes: r.notes }));
}

/**
 * Watches each run from its answer, and says when to strike: a share of the way into its second
 * working phase, by the length of its first (runs that wait in a queue are timed from when they
 * start, not from their answer); or, when the server's runs have a single working phase, a share of
 * this replay's shortest run of the tool after it started. The earliest aim of the batch wins.
 */
async function aimInsideRuns(
  inRuns: readonly { c: Case; notes: string[] }[],
  firsts: readonly Exchange[],
  ctx: CaseContext,
): Promise<number | undefined> {
  const { session } = ctx;
  const deadline = performance.now() + ctx.settleMs;
  const aims = await Promise.all(
    inRuns.map(async (r, i) => {
      const first = firsts[i]!;
      const runId = first.answer?.runId;
      // A run without a status the harness can read cannot be watched: strike at once.
      if (
        runId === undefined ||
        first.answer?.phase === undefined ||
        isTerminalPhase(first.answer.phase, session.conventions)
      )
        return performance.now();
      const runMs = session.runTime(r.c.subject.call.tool);
      let phase = first.answer?.phase;
      let started: number | undefined;
      for (;;) {
        const now = await session.poll(runId);
        const at = performance.now();
        if (
          now === undefined ||
          now.refused ||
          now.phase === undefined ||
          isTerminalPhase(now.phase, session.conventions) ||
          at > deadline
        )
          return at;
        if (now.phase !== phase && started === undefined) {
          started = at;
          phase = now.phase;
        } else if (now.phase !== phase && started !== undefined) {
          r.notes.push(
            `aimed at ${r.c.aimAt} of the way into phase ${now.phase}, by the ${round(at - started)} ms phase ${phase} took`,
          );
          return at + r.c.aimAt * (at - started);
        }
        if (started !== undefined && runMs !== undefined && at >= started + r.c.aimAt * runMs) {
          r.notes.push(
            `aimed at ${r.c.aimAt} of the ${round(runMs)} ms this replay's shortest run took, after it started`,
          );
          return at;
        }
        await sleep(5);
      }
    }),
  );
  return aims.length === 0 ? undefined : Math.min(...aims);
}

async function whereKillLanded(
  r: { c: Case; first: Promise<Exchange> | undefined },
  session: Session,
): Promise<string> {
  const first = await r.first!;
  const runId = first.answer?.runId;
  if (runId === undefined) return `SIGKILL after the answer, which named no run (${first.status})`;
  const now = await session.poll(runId);
  if (now === undefined) return `SIGKILL in run ${runId}`;
  if (now.phase === undefined)
    return `SIGKILL in run ${runId}, whose status the harness cannot read (give its status field and words)`;
  if (isTerminalPhase(now.phase, session.conventions))
    return `run ${runId} ended (${now.phase}) before the SIGKILL could land`;
  return `SIGKILL in phase ${now.phase} of run ${runId}`;
}
