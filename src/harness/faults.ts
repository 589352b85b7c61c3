// Runs one case of the plan: a recorded call, sent under its fault.
import { setTimeout as sleep } from 'node:timers/promises';
import { answerAtOnce, isTerminalPhase, readAnswer } from './answers.js';
import { freshKey, keyFieldOf, type Case } from './plan.js';
import type { Exchange, Role, SendOptions, Session } from './session.js';
import { mapStrings, type JsonObject } from './transcript.js';

export interface CaseContext {
  session: Session;
  seed: number;
  /** How long each phase of the server's runs lasts, to aim a mid-run SIGKILL. */
  phaseDelayMs: number;
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

export async function runCase(c: Case, ctx: CaseContext): Promise<CaseResult> {
  const { session } = ctx;
  const { call } = c.subject;
  const notes: string[] = [];
  const args = mapStrings(call.arguments, (text) => ctx.substitutions.get(text) ?? text) as JsonObject;
  const keyField = keyFieldOf(c.subject.info, call.arguments);
  if (c.extra && keyField !== null) args[keyField] = freshKey(ctx.seed, call.arguments[keyField] as string, c.n);

  let count = 0;
  const sent: Exchange[] = [];
  const send = async (role: Role, request: JsonObject = args, options?: SendOptions) => {
    // Numbered as sent, not as answered: a burst's copies are all in flight at once.
    const exchange = await session.send({ id: `${c.n}.${++count}`, line: call.line, fault: c.fault, tool: call.tool, args: request, role }, options);
    sent.push(exchange);
    return exchange;
  };
  const restart = async (first: Exchange) => {
    await session.target.restart();
    if (first.answer?.runId !== undefined) notes.push(`server SIGKILLed and restarted after run ${first.answer.runId} was acknowledged`);
  };

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
    case 'timeout':
      await send('first', args, { abortAfterMs: c.abortAfterMs });
      await send('retry');
      break;
    case 'lost-answer':
      await send('first', args, { lose: true });
      await send('retry');
      break;
    case 'changed-args': {
      const first = await send('first');
      const changed = c.changed!;
      const conflict = await send('retry', { ...args, [changed.field]: changed.value });
      if (conflict.role !== 'conflict') notes.push(`the first request was refused (${first.answer?.errorCode ?? first.status}), so changing ${changed.field} was no conflict`);
      else notes.push(`retried with ${changed.field} changed`);
      await send('retry');
      break;
    }
    case 'kill-between': {
      const first = await send('first');
      await restart(first);
      await send('retry');
      break;
    }
    case 'kill-mid-run': {
      // A call that waits for its run would answer only once the run is over: ask for an answer at once.
      const first = await send('first', answerAtOnce(args));
      notes.push(await aimMidRun(first, c, ctx));
      await restart(first);
      await send('retry');
      break;
    }
  }

  // Later recorded calls name the recorded run id (poll_run, cancel_run): give them this replay's.
  const recordedRunId = call.result === undefined ? undefined : readAnswer(call.result).runId;
  const replayedRunId = sent.find((e) => e.answer?.runId !== undefined)?.answer?.runId;
  if (!c.extra && recordedRunId !== undefined && replayedRunId !== undefined && !ctx.substitutions.has(recordedRunId)) {
    ctx.substitutions.set(recordedRunId, replayedRunId);
  }
  return { case: c, notes };
}

/**
 * Waits until the run is working, then `killAtPhase` phases into it, so the SIGKILL that follows lands
 * inside a phase. Says where it landed, or why it could not land mid-run.
 */
async function aimMidRun(first: Exchange, c: Case, ctx: CaseContext): Promise<string> {
  const runId = first.answer?.runId;
  const offsetMs = Math.round(c.killAtPhase * ctx.phaseDelayMs);
  if (runId === undefined || ctx.session.surface.poll === undefined) {
    await sleep(offsetMs);
    const why = runId === undefined ? 'the answer named no run' : "the server offers no poll_run to watch the run's phase";
    return `SIGKILL ${offsetMs} ms after the answer (${why})`;
  }
  if (isTerminalPhase(first.answer?.phase)) return `run ${runId} had already ended (${first.answer?.phase}) when answered; SIGKILL after it`;
  const started = await ctx.session.untilStarted(runId, first.answer?.phase, Date.now() + ctx.settleMs);
  await sleep(offsetMs);
  const now = await ctx.session.poll(runId);
  if (started === undefined || now === undefined) return `SIGKILL ${offsetMs} ms after run ${runId} started`;
  if (isTerminalPhase(now.phase)) {
    return `run ${runId} ended (${now.phase}) before the SIGKILL could land; a longer --phase-delay-ms on the server lands it mid-run`;
  }
  return `SIGKILL in phase ${now.phase} of run ${runId}, ${offsetMs} ms after it started`;
}
