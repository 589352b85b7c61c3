// The idempotency invariants, judged from what the server answered. Each says whether it held, was
// broken (naming the calls that broke it), or could not be checked against this server, and why:
// a check that was not run never passes.
import { isFinishedPhase, isTerminalPhase, type Answer } from './answers.js';
import type { Exchange, RunResource, Surface, Usage } from './session.js';

export const INVARIANTS = {
  'one-run-per-key': 'one run per (tool, key)',
  'same-answer': 'every replay answers the same run; once done, the same asset hashes',
  'one-charge-per-run': 'one charge per run',
  'no-acknowledged-run-lost': 'no acknowledged run lost',
  'terminal-within-bound': 'every run terminal within the bound',
  'conflict-refused': 'the same key with changed arguments is refused',
  'conflict-created-nothing': 'a refused conflict created nothing',
} as const;
export type InvariantId = keyof typeof INVARIANTS;

export interface Violation {
  message: string;
  /** The exchanges that broke it, by id ("3.2", "late.1"). */
  calls: string[];
}

export interface InvariantResult {
  id: InvariantId;
  title: string;
  status: 'held' | 'broken' | 'not-checked';
  /** What was checked ("6 keys") or, when not checked, why not. */
  detail: string;
  violations: Violation[];
}

export interface Evidence {
  exchanges: readonly Exchange[];
  surface: Surface;
  usageBefore: Usage | undefined;
  usageAfter: Usage | undefined;
  /** Each run's last poll after the faults, by run id. */
  settled: ReadonlyMap<string, Exchange>;
  resources: ReadonlyMap<string, RunResource>;
  /** Runs a replayed call deleted: their absence at the end is no loss. */
  deleted: ReadonlySet<string>;
  settleMs: number;
}

type Answered = Exchange & { answer: Answer };
const hasRun = (e: Exchange): e is Answered & { answer: { runId: string } } => e.answer?.runId !== undefined;
const accepted = (e: Exchange): e is Answered => e.answer !== undefined && !e.answer.refused;
const plural = (n: number, word: string, words = `${word}s`) => `${n} ${n === 1 ? word : words}`;
const caseOf = (e: Exchange) => e.id.split('.')[0];
const groupName = (e: Exchange) => `${e.tool} ${e.key === undefined ? '(same arguments)' : `key ${e.key}`}`;

/** `what` names one checked item, and many when the plural is not just an added "s". */
function result(id: InvariantId, checked: number, what: string | [string, string], violations: Violation[], notCheckedBecause: string): InvariantResult {
  const title = INVARIANTS[id];
  if (checked === 0 && violations.length === 0) return { id, title, status: 'not-checked', detail: notCheckedBecause, violations };
  const [one, many] = typeof what === 'string' ? [what, `${what}s`] : what;
  return { id, title, status: violations.length > 0 ? 'broken' : 'held', detail: plural(checked, one, many), violations };
}

/** Exchanges of each group, in the order they were sent; the harness's polls belong to none. */
function groupsOf(exchanges: readonly Exchange[]): Map<string, Exchange[]> {
  const groups = new Map<string, Exchange[]>();
  for (const e of exchanges) {
    if (e.group === undefined || e.role === 'poll') continue;
    groups.set(e.group, [...(groups.get(e.group) ?? []), e]);
  }
  return groups;
}

/** Runs the replay made or touched through grouped calls, less those it deleted. */
export function runsOf(evidence: Pick<Evidence, 'exchanges' | 'deleted'>): string[] {
  const ids = evidence.exchanges.filter((e) => e.group !== undefined && hasRun(e)).map((e) => e.answer!.runId!);
  return [...new Set(ids)].filter((id) => !evidence.deleted.has(id));
}

export function checkInvariants(evidence: Evidence): InvariantResult[] {
  return [oneRunPerKey(evidence), sameAnswer(evidence), oneChargePerRun(evidence), noAcknowledgedRunLost(evidence), terminalWithinBound(evidence), ...conflicts(evidence)];
}

function oneRunPerKey({ exchanges, usageBefore, usageAfter }: Evidence): InvariantResult {
  const violations: Violation[] = [];
  let keys = 0;
  for (const list of groupsOf(exchanges).values()) {
    // A conflict answered with a run of its own is a second run for the key, too.
    const withRun = list.filter(hasRun);
    if (withRun.length === 0) continue;
    keys++;
    const runs = [...new Set(withRun.map((e) => e.answer.runId))];
    if (runs.length > 1) {
      const answers = runs.map((run) => `${run} (${withRun.filter((e) => e.answer.runId === run).map((e) => e.id).join(', ')})`);
      violations.push({ message: `${groupName(withRun[0]!)} has ${runs.length} runs: ${answers.join(', ')}`, calls: withRun.map((e) => e.id) });
    }
  }
  if (usageBefore !== undefined && usageAfter !== undefined && usageAfter.runs - usageBefore.runs > keys) {
    // The extra runs were named by no answer: the requests that never got one are where to look.
    const unanswered = exchanges.filter((e) => e.group !== undefined && e.status !== 'answered').map((e) => e.id);
    const hint = unanswered.length === 0 ? '' : `; ${plural(unanswered.length, 'request')} got no answer`;
    violations.push({ message: `get_usage counts ${usageAfter.runs - usageBefore.runs} new runs for ${plural(keys, 'key')}${hint}`, calls: unanswered });
  }
  return result('one-run-per-key', keys, 'key', violations, 'no answer to a tool with an idempotency key (or idempotentHint) named a run');
}

function sameAnswer({ exchanges }: Evidence): InvariantResult {
  const violations: Violation[] = [];
  let checked = 0;
  for (const list of groupsOf(exchanges).values()) {
    const answers = list.filter(accepted).filter((e) => e.role !== 'conflict');
    const [reference, ...others] = answers;
    if (reference === undefined || others.length === 0) continue;
    checked++;
    const differ = reference.answer.runId !== undefined ? others.filter((e) => e.answer.runId !== reference.answer.runId) : others.filter((e) => e.answer.digest !== reference.answer.digest);
    for (const e of differ) {
      const what = reference.answer.runId !== undefined ? `run ${e.answer.runId ?? '(none)'}, not run ${reference.answer.runId}` : 'a different answer';
      violations.push({ message: `${groupName(e)}: ${e.id} (${e.role}) answered ${what} as ${reference.id} did`, calls: [reference.id, e.id] });
    }
  }
  // Once a run is done, every answer that names it shows the same assets, whichever call asked.
  const finished = new Map<string, Answered[]>();
  for (const e of exchanges) {
    if (!hasRun(e) || e.answer.assetHashes === undefined) continue;
    if (e.answer.phase !== undefined && !isFinishedPhase(e.answer.phase)) continue;
    finished.set(e.answer.runId, [...(finished.get(e.answer.runId) ?? []), e]);
  }
  for (const [runId, [reference, ...others]] of finished) {
    if (reference === undefined || others.length === 0) continue;
    checked++;
    const hashes = reference.answer.assetHashes!.join();
    for (const e of others.filter((o) => o.answer.assetHashes!.join() !== hashes)) {
      violations.push({ message: `run ${runId}: ${e.id} shows other asset hashes than ${reference.id}`, calls: [reference.id, e.id] });
    }
  }
  return result('same-answer', checked, ['key or run answered twice or more', 'keys or runs answered twice or more'], violations, 'no key was answered twice');
}

function oneChargePerRun(evidence: Evidence): InvariantResult {
  const { surface, usageBefore, usageAfter, resources, settled, exchanges } = evidence;
  const id = 'one-charge-per-run';
  if (surface.usage === undefined) return result(id, 0, '', [], 'the server offers no get_usage tool, so its charges cannot be seen');
  if (usageBefore === undefined || usageAfter === undefined) return result(id, 0, '', [], 'get_usage did not answer with numeric runs and charges');
  const runs = runsOf(evidence);
  const isBilled = (runId: string) => resources.get(runId)?.billed ?? isFinishedPhase(settled.get(runId)?.answer?.phase);
  const violations: Violation[] = [];
  const callsOf = (runId: string) => exchanges.filter((e) => e.answer?.runId === runId).map((e) => e.id);
  for (const runId of runs) {
    const resource = resources.get(runId);
    if (resource?.billed === undefined || resource.phase === undefined) continue;
    if (resource.billed && !isFinishedPhase(resource.phase)) {
      violations.push({ message: `run ${runId} is billed but ended ${resource.phase} (runs://${runId})`, calls: callsOf(runId) });
    } else if (!resource.billed && isFinishedPhase(resource.phase)) {
      violations.push({ message: `run ${runId} is ${resource.phase} but not billed (runs://${runId})`, calls: callsOf(runId) });
    }
  }
  const billed = runs.filter(isBilled);
  const charges = usageAfter.charges - usageBefore.charges;
  // Runs no answer named (a request aborted after the server took it) may each be billed once too;
  // more runs than keys is one-run-per-key's finding, not a double charge.
  const unseen = Math.max(0, usageAfter.runs - usageBefore.runs - runs.length);
  if (charges > billed.length + unseen) {
    // Name the tool whose charges outrun its runs, and its calls that were replays of an answered key.
    // runledger counts by catalogue name (product_shot) what its create_product_shot tool made.
    const tools = Object.keys(usageAfter.byTool).filter((tool) => {
      const added = usageAfter.byTool[tool]!.charges - (usageBefore.byTool[tool]?.charges ?? 0);
      const ownRuns = billed.filter((runId) => exchanges.some((e) => e.answer?.runId === runId && (e.tool === tool || e.tool === `create_${tool}`)));
      return added > ownRuns.length;
    });
    const replays = [...groupsOf(exchanges).values()].flatMap((list) => list.filter(hasRun).slice(1)).filter((e) => tools.length === 0 || tools.some((t) => e.tool === t || e.tool === `create_${t}`));
    const where = tools.length === 0 ? '' : ` (${tools.join(', ')})`;
    const runsText = plural(billed.length + unseen, 'billed run') + (unseen > 0 ? ` (${unseen} no answer named)` : '');
    violations.push({ message: `get_usage counts ${plural(charges, 'new charge')} for ${runsText}${where}: replays were billed`, calls: replays.map((e) => e.id) });
  }
  return result(id, runs.length, 'run', violations, 'no run was created');
}

function noAcknowledgedRunLost(evidence: Evidence): InvariantResult {
  const { exchanges, settled, deleted } = evidence;
  const violations: Violation[] = [];
  let checked = 0;
  const acknowledged = new Map<string, Exchange>();
  for (const e of exchanges) {
    if (e.acknowledged && e.group !== undefined && e.role !== 'conflict' && e.role !== 'late' && hasRun(e) && !deleted.has(e.answer.runId) && !acknowledged.has(e.answer.runId)) {
      acknowledged.set(e.answer.runId, e);
    }
  }
  for (const [runId, ack] of acknowledged) {
    const poll = settled.get(runId);
    // Only a key leads back to its run: a tool without one may rightly answer a new id on each call.
    const late = ack.key === undefined ? undefined : exchanges.find((e) => e.role === 'late' && e.group === ack.group && e.answer !== undefined);
    if (poll === undefined && late === undefined) continue;
    checked++;
    if (poll?.answer?.refused === true) {
      violations.push({ message: `run ${runId}, acknowledged by ${ack.id}, is gone: poll_run answers ${poll.answer.errorCode ?? 'an error'}`, calls: [ack.id, poll.id] });
    } else if (late !== undefined && late.answer!.runId !== runId) {
      const now = late.answer!.refused ? `is refused (${late.answer!.errorCode ?? 'error'})` : `answers run ${late.answer!.runId ?? '(none)'}`;
      violations.push({ message: `run ${runId}, acknowledged by ${ack.id}, is lost: the last retry of ${groupName(ack)} ${now}`, calls: [ack.id, late.id] });
    }
  }
  const why = acknowledged.size === 0 ? 'no acknowledged answer named a run' : 'the server offers no poll_run and no key could be retried at the end';
  return result('no-acknowledged-run-lost', checked, 'acknowledged run', violations, why);
}

function terminalWithinBound({ surface, settled, exchanges, settleMs }: Evidence): InvariantResult {
  const id = 'terminal-within-bound';
  if (surface.poll === undefined) return result(id, 0, '', [], 'the server offers no poll_run tool to follow a run');
  const violations: Violation[] = [];
  let checked = 0;
  for (const [runId, poll] of settled) {
    // A run poll_run cannot find is a lost run, judged above, not a slow one; a poll that got no
    // answer at all says nothing about the run.
    if (poll.answer === undefined || poll.answer.refused) continue;
    checked++;
    if (!isTerminalPhase(poll.answer.phase)) {
      const calls = exchanges.filter((e) => e.answer?.runId === runId).map((e) => e.id);
      violations.push({ message: `run ${runId} is still ${poll.answer.phase ?? 'without a phase'} ${settleMs / 1000} s after the last fault`, calls });
    }
  }
  return result(id, checked, 'run', violations, settled.size === 0 ? 'no run was created' : 'poll_run answered for no run');
}

function conflicts({ exchanges }: Evidence): InvariantResult[] {
  const refusedViolations: Violation[] = [];
  const nothingViolations: Violation[] = [];
  let answered = 0;
  let refused = 0;
  for (const [index, e] of exchanges.entries()) {
    if (e.role !== 'conflict' || e.answer === undefined) continue;
    answered++;
    if (!e.answer.refused) {
      refusedViolations.push({ message: `${e.id}: ${groupName(e)} with changed arguments was answered (run ${e.answer.runId ?? '(none)'}) instead of refused`, calls: [e.id] });
      continue;
    }
    refused++;
    if (e.runsBefore !== undefined && e.runsAfter !== undefined && e.runsAfter > e.runsBefore) {
      nothingViolations.push({ message: `${e.id} was refused, yet get_usage counted ${e.runsAfter - e.runsBefore} new run(s) across it`, calls: [e.id] });
    }
    // The retry that follows within the same case, before any other fault could move the key.
    const sameKey = (o: Exchange): o is Answered => o.group === e.group && o.role !== 'conflict' && hasRun(o);
    const original = exchanges.slice(0, index).find(sameKey);
    const after = exchanges.slice(index + 1).filter(sameKey).find((o) => caseOf(o) === caseOf(e));
    if (original !== undefined && after !== undefined && after.answer.runId !== original.answer.runId) {
      nothingViolations.push({
        message: `after ${e.id} was refused, ${groupName(e)} answers run ${after.answer.runId} (${after.id}), not its run ${original.answer.runId}`,
        calls: [e.id, after.id],
      });
    }
  }
  return [
    result('conflict-refused', answered, ['changed-arguments retry', 'changed-arguments retries'], refusedViolations, 'no call changed the arguments under a used key'),
    result('conflict-created-nothing', refused, 'refused conflict', nothingViolations, 'no conflict was refused'),
  ];
}
