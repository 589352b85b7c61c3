// The idempotency invariants, judged from what the server answered. Each says whether it held, was
// broken (naming the calls that broke it), or could not be checked against this server, and why,
// naming the convention that was missing and the flag or profile field that supplies it: a check
// that was not run never passes.
import { isFinishedPhase, isTerminalPhase, type Answer, type Usage } from './answers.js';
import { SUPPLIED_BY, type AnswerConventions, type ConventionName } from './profile.js';
import type { Exchange, LateProgress, RunResource } from './session.js';

export const INVARIANTS = {
  'one-run-per-key': 'one run per (tool, key)',
  'same-answer': 'every replay answers the same run; once done, the same asset hashes',
  'one-charge-per-run': 'one charge per run',
  'no-acknowledged-run-lost': 'no acknowledged run lost',
  'terminal-within-bound': 'every run terminal within the bound',
  'conflict-refused': 'the same key with changed arguments is refused',
  'conflict-created-nothing': 'a refused conflict created nothing',
  'no-progress-after-response': 'no progress notification after its call was answered',
} as const;
export type InvariantId = keyof typeof INVARIANTS;

export interface Violation {
  message: string;
  /** The exchanges that broke it, by id ("3.2", "late.1"). */
  calls: string[];
}

/** What a check lacked: a convention of the server (with the flag or profile field that names it), or a kind of call. */
export interface Missing {
  convention: string;
  flag: string | null;
  profile_field: string | null;
}

export interface InvariantResult {
  id: InvariantId;
  title: string;
  status: 'held' | 'broken' | 'not-checked';
  /** What was checked ("6 keys") or, when not checked, why not. */
  detail: string;
  violations: Violation[];
  /** When not checked: what would let it be. */
  missing: Missing[];
}

/** What the server offers the checks: each convention the profile resolved, or why not. */
export interface Surface {
  poll: string | undefined;
  /** The usage tool, when it could be read; else why not. */
  usage: { tool: string; runs: boolean } | { problem: string };
  /** The URI template of a run's resource, when the server has one. */
  runResource: string | undefined;
  /** Why a convention was not found, when a profile named one the server lacks. */
  notes: Partial<Record<ConventionName, string>>;
}

export interface Evidence {
  exchanges: readonly Exchange[];
  conventions: AnswerConventions;
  surface: Surface;
  usageBefore: Usage | undefined;
  usageAfter: Usage | undefined;
  /** Each run's last poll after the faults, by run id. */
  settled: ReadonlyMap<string, Exchange>;
  resources: ReadonlyMap<string, RunResource>;
  /** Runs a replayed call deleted: their absence at the end is no loss. */
  deleted: ReadonlySet<string>;
  settleMs: number;
  lateProgress: readonly LateProgress[];
  progressSeen: number;
}

type Answered = Exchange & { answer: Answer };
const hasRun = (e: Exchange): e is Answered & { answer: { runId: string } } => e.answer?.runId !== undefined;
const accepted = (e: Exchange): e is Answered => e.answer !== undefined && !e.answer.refused;
const plural = (n: number, word: string, words = `${word}s`) => `${n} ${n === 1 ? word : words}`;
const caseOf = (e: Exchange) => e.id.split('.')[0];
const usageName = (surface: Surface) => ('tool' in surface.usage ? surface.usage.tool : 'the usage tool');
const groupName = (e: Exchange) => `${e.tool} ${e.key === undefined ? '(same arguments)' : `key ${e.key}`}`;

const convention = (name: keyof typeof SUPPLIED_BY, what: string): Missing => ({
  convention: what,
  ...SUPPLIED_BY[name],
});
const lacking = (what: string): Missing => ({ convention: what, flag: null, profile_field: null });
const MISSING = {
  runId: convention('run_id', 'the field an answer names its run in'),
  key: convention('key_argument', 'the argument that carries the idempotency key'),
  poll: convention('poll', 'a tool that follows a run by its id'),
  usage: convention('usage', 'a tool that counts runs and charges'),
  usageFields: convention('usage_fields', "the usage tool's fields for runs and charges"),
  status: convention('status', "the field a run's answer gives its status in, and the words that end a run"),
  retried: lacking(
    'a recorded call with an idempotency key, or to a tool that claims idempotentHint, for the faults to retry',
  ),
  changeable: lacking(
    'a recorded call with an idempotency key and an argument that can change (a string, number or boolean)',
  ),
};

/** `what` names one checked item, and many when the plural is not just an added "s". */
function result(
  id: InvariantId,
  checked: number,
  what: string | [string, string],
  violations: Violation[],
  notChecked: { because: string; missing: Missing[] },
  note = '',
): InvariantResult {
  const title = INVARIANTS[id];
  if (checked === 0 && violations.length === 0)
    return { id, title, status: 'not-checked', detail: notChecked.because, violations, missing: notChecked.missing };
  const [one, many] = typeof what === 'string' ? [what, `${what}s`] : what;
  return {
    id,
    title,
    status: violations.length > 0 ? 'broken' : 'held',
    detail: plural(checked, one, many) + note,
    violations,
    missing: [],
  };
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

/**
 * Groups whose answers, the last retry's included, named more than one run: one-run-per-key's
 * finding. Such a key leads back to one of its runs at best, so its last retry proves nothing about
 * any of them being lost.
 */
function splitGroups(exchanges: readonly Exchange[]): Set<string> {
  const split = new Set<string>();
  for (const [group, list] of groupsOf(exchanges)) {
    if (new Set(list.filter((e) => e.role !== 'conflict' && hasRun(e)).map((e) => e.answer!.runId)).size > 1)
      split.add(group);
  }
  return split;
}

/** Runs the replay made or touched through grouped calls, less those it deleted. */
export function runsOf(evidence: Pick<Evidence, 'exchanges' | 'deleted'>): string[] {
  const ids = evidence.exchanges.filter((e) => e.group !== undefined && hasRun(e)).map((e) => e.answer!.runId!);
  return [...new Set(ids)].filter((id) => !evidence.deleted.has(id));
}

export function checkInvariants(evidence: Evidence): InvariantResult[] {
  return [
    oneRunPerKey(evidence),
    sameAnswer(evidence),
    oneChargePerRun(evidence),
    noAcknowledgedRunLost(evidence),
    terminalWithinBound(evidence),
    ...conflicts(evidence),
    noProgressAfterResponse(evidence),
  ];
}

/** Why no run could be followed from the answers: no grouped call at all, or answers that named no run. */
function noRunsBecause(exchanges: readonly Exchange[]): { because: string; missing: Missing[] } {
  const grouped = exchanges.some((e) => e.group !== undefined && e.role !== 'poll');
  if (!grouped)
    return {
      because: 'no recorded call carries an idempotency key or goes to a tool that claims idempotentHint',
      missing: [MISSING.retried, MISSING.key],
    };
  const keyed = exchanges.some((e) => e.key !== undefined);
  return {
    because: 'no answer to a call with an idempotency key (or to an idempotentHint tool) named a run',
    missing: keyed ? [MISSING.runId] : [MISSING.runId, MISSING.key],
  };
}

function oneRunPerKey({ exchanges, usageBefore, usageAfter, surface }: Evidence): InvariantResult {
  const violations: Violation[] = [];
  let keys = 0;
  for (const list of groupsOf(exchanges).values()) {
    // A conflict answered with a run of its own is a second run for the key, too.
    const withRun = list.filter(hasRun);
    if (withRun.length === 0) continue;
    keys++;
    const runs = [...new Set(withRun.map((e) => e.answer.runId))];
    if (runs.length > 1) {
      const answers = runs.map(
        (run) =>
          `${run} (${withRun
            .filter((e) => e.answer.runId === run)
            .map((e) => e.id)
            .join(', ')})`,
      );
      violations.push({
        message: `${groupName(withRun[0]!)} has ${runs.length} runs: ${answers.join(', ')}`,
        calls: withRun.map((e) => e.id),
      });
    }
  }
  const newRuns =
    usageBefore?.runs !== undefined && usageAfter?.runs !== undefined ? usageAfter.runs - usageBefore.runs : undefined;
  if (newRuns !== undefined && newRuns > keys && keys > 0) {
    // The extra runs were named by no answer: the requests that never got one are where to look.
    const unanswered = exchanges.filter((e) => e.group !== undefined && e.status !== 'answered').map((e) => e.id);
    const hint = unanswered.length === 0 ? '' : `; ${plural(unanswered.length, 'request')} got no answer`;
    violations.push({
      message: `${usageName(surface)} counts ${newRuns} new runs for ${plural(keys, 'key')}${hint}`,
      calls: unanswered,
    });
  }
  return result('one-run-per-key', keys, 'key', violations, noRunsBecause(exchanges));
}

function sameAnswer({ exchanges, conventions }: Evidence): InvariantResult {
  const violations: Violation[] = [];
  let checked = 0;
  for (const list of groupsOf(exchanges).values()) {
    const answers = list.filter(accepted).filter((e) => e.role !== 'conflict');
    const [reference, ...others] = answers;
    if (reference === undefined || others.length === 0) continue;
    checked++;
    const differ =
      reference.answer.runId !== undefined
        ? others.filter((e) => e.answer.runId !== reference.answer.runId)
        : others.filter((e) => e.answer.digest !== reference.answer.digest);
    for (const e of differ) {
      const what =
        reference.answer.runId !== undefined
          ? `run ${e.answer.runId ?? '(none)'}, not run ${reference.answer.runId}`
          : 'a different answer';
      violations.push({
        message: `${groupName(e)}: ${e.id} (${e.role}) answered ${what} as ${reference.id} did`,
        calls: [reference.id, e.id],
      });
    }
  }
  // Once a run is done, every answer that names it shows the same assets, whichever call asked.
  const finished = new Map<string, Answered[]>();
  for (const e of exchanges) {
    if (!hasRun(e) || e.answer.assetHashes === undefined) continue;
    if (e.answer.phase !== undefined && !isFinishedPhase(e.answer.phase, conventions)) continue;
    finished.set(e.answer.runId, [...(finished.get(e.answer.runId) ?? []), e]);
  }
  for (const [runId, [reference, ...others]] of finished) {
    if (reference === undefined || others.length === 0) continue;
    checked++;
    const hashes = reference.answer.assetHashes!.join();
    for (const e of others.filter((o) => o.answer.assetHashes!.join() !== hashes)) {
      violations.push({
        message: `run ${runId}: ${e.id} shows other asset hashes than ${reference.id}`,
        calls: [reference.id, e.id],
      });
    }
  }
  const grouped = exchanges.some((e) => e.group !== undefined && e.role !== 'poll');
  const notChecked = grouped ? { because: 'no key was answered twice', missing: [] } : noRunsBecause(exchanges);
  return result(
    'same-answer',
    checked,
    ['key or run answered twice or more', 'keys or runs answered twice or more'],
    violations,
    notChecked,
  );
}

function oneChargePerRun(evidence: Evidence): InvariantResult {
  const { surface, usageBefore, usageAfter, resources, exchanges, conventions } = evidence;
  const id = 'one-charge-per-run';
  if ('problem' in surface.usage) {
    const missing = surface.usage.problem.startsWith('no usage tool') ? [MISSING.usage] : [MISSING.usageFields];
    return result(id, 0, '', [], { because: surface.usage.problem, missing });
  }
  if (usageBefore === undefined || usageAfter === undefined)
    return result(id, 0, '', [], {
      because: `${surface.usage.tool} could not be read at the start and the end`,
      missing: [MISSING.usageFields],
    });
  const runs = runsOf(evidence);
  if (runs.length === 0) return result(id, 0, '', [], noRunsBecause(exchanges));
  const violations: Violation[] = [];
  const callsOf = (runId: string) => exchanges.filter((e) => e.answer?.runId === runId).map((e) => e.id);
  const where = (runId: string) => surface.runResource?.replace(/\{[^{}]+\}/, runId) ?? 'its run resource';
  for (const runId of runs) {
    const resource = resources.get(runId);
    if (resource?.billed === undefined || resource.phase === undefined) continue;
    if (resource.billed && !isFinishedPhase(resource.phase, conventions)) {
      violations.push({
        message: `run ${runId} is billed but ended ${resource.phase} (${where(runId)})`,
        calls: callsOf(runId),
      });
    } else if (!resource.billed && isFinishedPhase(resource.phase, conventions)) {
      violations.push({
        message: `run ${runId} is ${resource.phase} but not billed (${where(runId)})`,
        calls: callsOf(runId),
      });
    }
  }
  const billed = runs.filter((runId) => billable(evidence, runId));
  const charges = usageAfter.charges - usageBefore.charges;
  // Runs no answer named (a request abandoned after the server took it) may each be billed once too;
  // more runs than keys is one-run-per-key's finding, not a double charge. Without a count of runs,
  // every request that got no answer may have made one.
  const unseen =
    usageBefore.runs !== undefined && usageAfter.runs !== undefined
      ? Math.max(0, usageAfter.runs - usageBefore.runs - runs.length)
      : exchanges.filter((e) => e.group !== undefined && (e.status !== 'answered' || !e.acknowledged)).length;
  if (charges > billed.length + unseen) {
    // Name the tool whose charges outrun its runs, and its calls that were replays of an answered key.
    // runledger counts by catalogue name (product_shot) what its create_product_shot tool made.
    const ownedBy = (e: Exchange, tool: string) => e.tool === tool || e.tool === `create_${tool}`;
    const tools = Object.keys(usageAfter.byTool).filter((tool) => {
      const added = usageAfter.byTool[tool]!.charges - (usageBefore.byTool[tool]?.charges ?? 0);
      return (
        added > billed.filter((runId) => exchanges.some((e) => e.answer?.runId === runId && ownedBy(e, tool))).length
      );
    });
    const replays = [...groupsOf(exchanges).values()]
      .flatMap((list) => list.filter(hasRun).slice(1))
      .filter((e) => tools.length === 0 || tools.some((t) => ownedBy(e, t)));
    const where = tools.length === 0 ? '' : ` (${tools.join(', ')})`;
    const runsText = plural(billed.length + unseen, 'billed run') + (unseen > 0 ? ` (${unseen} no answer named)` : '');
    violations.push({
      message: `${surface.usage.tool} counts ${plural(charges, 'new charge')} for ${runsText}${where}: replays were billed`,
      calls: replays.map((e) => e.id),
    });
  }
  return result(id, runs.length, 'run', violations, noRunsBecause(exchanges));
}

/**
 * Whether a run was billable: as its run resource says, else as its last known status ends, else —
 * an answer with no status at all is a synchronous call's, finished when answered.
 */
function billable(evidence: Evidence, runId: string): boolean {
  const { resources, settled, exchanges, conventions } = evidence;
  const billed = resources.get(runId)?.billed;
  if (billed !== undefined) return billed;
  const phase =
    settled.get(runId)?.answer?.phase ??
    exchanges.filter((e) => e.answer?.runId === runId && e.answer.phase !== undefined).at(-1)?.answer?.phase;
  if (phase !== undefined) return isFinishedPhase(phase, conventions);
  return exchanges.some((e) => e.answer?.runId === runId && !e.answer.refused);
}

function noAcknowledgedRunLost(evidence: Evidence): InvariantResult {
  const { exchanges, settled, deleted, surface } = evidence;
  const violations: Violation[] = [];
  let checked = 0;
  const split = splitGroups(exchanges);
  let splitSkipped = 0;
  const acknowledged = new Map<string, Exchange>();
  for (const e of exchanges) {
    if (
      e.acknowledged &&
      e.group !== undefined &&
      e.role !== 'conflict' &&
      e.role !== 'late' &&
      hasRun(e) &&
      !deleted.has(e.answer.runId) &&
      !acknowledged.has(e.answer.runId)
    ) {
      acknowledged.set(e.answer.runId, e);
    }
  }
  for (const [runId, ack] of acknowledged) {
    const poll = settled.get(runId);
    // Only a key leads back to its run: a tool without one may rightly answer a new id on each call.
    // And a key that named several runs is one-run-per-key's finding, not a lost run.
    const keySplit = ack.group !== undefined && split.has(ack.group);
    const late =
      ack.key === undefined || keySplit
        ? undefined
        : exchanges.findLast((e) => e.role === 'late' && e.group === ack.group && e.answer !== undefined);
    if (poll === undefined && late === undefined) {
      if (keySplit) splitSkipped++;
      continue;
    }
    checked++;
    if (poll?.answer?.refused === true) {
      violations.push({
        message: `run ${runId}, acknowledged by ${ack.id}, is gone: ${poll.tool} answers ${poll.answer.errorCode ?? 'an error'}`,
        calls: [ack.id, poll.id],
      });
    } else if (late !== undefined && late.answer!.runId !== runId) {
      const now = late.answer!.refused
        ? `is refused (${late.answer!.errorCode ?? 'error'})`
        : `answers run ${late.answer!.runId ?? '(none)'}`;
      violations.push({
        message: `run ${runId}, acknowledged by ${ack.id}, is lost: the last retry of ${groupName(ack)} ${now}`,
        calls: [ack.id, late.id],
      });
    }
  }
  const note =
    splitSkipped > 0 ? `; ${plural(splitSkipped, 'run')} of keys that named several runs left to one-run-per-key` : '';
  let notChecked: { because: string; missing: Missing[] };
  if (acknowledged.size === 0) notChecked = noRunsBecause(exchanges);
  else if (splitSkipped === acknowledged.size)
    notChecked = {
      because: `every acknowledged run belongs to a key that named several runs (one-run-per-key), and no poll tool follows runs by id`,
      missing: [MISSING.poll],
    };
  else
    notChecked = {
      because: `no tool follows a run by id${surface.notes.poll === undefined ? '' : ` (${surface.notes.poll})`}, and no key could be retried at the end`,
      missing: [MISSING.poll],
    };
  return result('no-acknowledged-run-lost', checked, 'acknowledged run', violations, notChecked, note);
}

/**
 * With a poll tool, each run's last poll after the bound; without one, the last retry of each key,
 * whose answer is the run's own: no status, or an ending one, is a run that ended (a synchronous
 * tool answers only when done); a status that has not ended is a run still going.
 */
function terminalWithinBound({ surface, settled, exchanges, settleMs, conventions }: Evidence): InvariantResult {
  const id = 'terminal-within-bound';
  const violations: Violation[] = [];
  let checked = 0;
  const stillGoing = (runId: string, phase: string | undefined, how: string) => {
    const calls = exchanges.filter((e) => e.answer?.runId === runId).map((e) => e.id);
    violations.push({
      message: `run ${runId} is still ${phase ?? 'without a phase'} ${settleMs / 1000} s after the last fault${how}`,
      calls,
    });
  };
  if (surface.poll !== undefined) {
    let statusless = 0;
    for (const [runId, poll] of settled) {
      // A run the poll tool cannot find is a lost run, judged above, not a slow one; a poll that got no
      // answer at all says nothing about the run, and nor does one without a status.
      if (poll.answer === undefined || poll.answer.refused) continue;
      if (poll.answer.phase === undefined) {
        statusless++;
        continue;
      }
      checked++;
      if (!isTerminalPhase(poll.answer.phase, conventions)) stillGoing(runId, poll.answer.phase, '');
    }
    const notChecked =
      settled.size === 0
        ? noRunsBecause(exchanges)
        : statusless > 0
          ? { because: `${surface.poll} answered with no status the harness knows`, missing: [MISSING.status] }
          : { because: `${surface.poll} answered for no run`, missing: [MISSING.poll] };
    return result(id, checked, 'run', violations, notChecked);
  }
  // Each key's last retry: the one that saw its run the latest.
  const lastOf = new Map<string, Exchange>();
  for (const e of exchanges) if (e.role === 'late' && e.group !== undefined && hasRun(e)) lastOf.set(e.group, e);
  const seen = new Set<string>();
  for (const late of lastOf.values()) {
    const runId = late.answer!.runId!;
    if (seen.has(runId)) continue;
    seen.add(runId);
    checked++;
    if (late.answer!.phase !== undefined && !isTerminalPhase(late.answer!.phase, conventions))
      stillGoing(runId, late.answer!.phase, ` (the last retry of ${groupName(late)} says so)`);
  }
  const why = `no tool follows a run by id${surface.notes.poll === undefined ? '' : ` (${surface.notes.poll})`}, and no key's last retry answered its run`;
  return result(
    id,
    checked,
    'run',
    violations,
    { because: why, missing: [MISSING.poll] },
    checked > 0 ? ', by the last retry of each key (no poll tool)' : '',
  );
}

function conflicts({ exchanges, surface }: Evidence): InvariantResult[] {
  const refusedViolations: Violation[] = [];
  const nothingViolations: Violation[] = [];
  let answered = 0;
  let refused = 0;
  const recorded: number[] = [];
  for (const [index, e] of exchanges.entries()) {
    if (e.role !== 'conflict' || e.answer === undefined) continue;
    answered++;
    if (e.fault === null && e.line !== null) recorded.push(e.line);
    if (!e.answer.refused) {
      refusedViolations.push({
        message: `${e.id}: ${groupName(e)} with changed arguments was answered (run ${e.answer.runId ?? '(none)'}) instead of refused`,
        calls: [e.id],
      });
      continue;
    }
    refused++;
    if (e.runsBefore !== undefined && e.runsAfter !== undefined && e.runsAfter > e.runsBefore) {
      nothingViolations.push({
        message: `${e.id} was refused, yet ${usageName(surface)} counted ${e.runsAfter - e.runsBefore} new run(s) across it`,
        calls: [e.id],
      });
    }
    // The retry that follows within the same case, before any other fault could move the key.
    const sameKey = (o: Exchange): o is Answered => o.group === e.group && o.role !== 'conflict' && hasRun(o);
    const original = exchanges.slice(0, index).find(sameKey);
    const after = exchanges
      .slice(index + 1)
      .filter(sameKey)
      .find((o) => caseOf(o) === caseOf(e));
    if (original !== undefined && after !== undefined && after.answer.runId !== original.answer.runId) {
      nothingViolations.push({
        message: `after ${e.id} was refused, ${groupName(e)} answers run ${after.answer.runId} (${after.id}), not its run ${original.answer.runId}`,
        calls: [e.id, after.id],
      });
    }
  }
  // A conflict the transcript itself holds is replayed as recorded, whether or not changed-args ran.
  const fromRecording =
    recorded.length === 0
      ? ''
      : ` (${recorded.length === answered ? 'all' : recorded.length} replayed as recorded, line ${recorded.join(', ')})`;
  const noConflict = exchanges.some((e) => e.key !== undefined)
    ? { because: 'no call changed the arguments under a used key', missing: [MISSING.changeable] }
    : { because: 'no call carried an idempotency key to change the arguments under', missing: [MISSING.key] };
  return [
    result(
      'conflict-refused',
      answered,
      ['changed-arguments retry', 'changed-arguments retries'],
      refusedViolations,
      noConflict,
      fromRecording,
    ),
    result(
      'conflict-created-nothing',
      refused,
      'refused conflict',
      nothingViolations,
      answered > 0 ? { because: 'no conflict was refused', missing: [] } : noConflict,
      fromRecording,
    ),
  ];
}

function noProgressAfterResponse({ exchanges, lateProgress, progressSeen }: Evidence): InvariantResult {
  const calls = exchanges.filter((e) => e.status === 'answered' || e.answer !== undefined).length;
  const violations = lateProgress.map((late) => ({
    message: `${late.call}: a progress notification for ${late.tool} came ${late.afterMs} ms after its answer`,
    calls: [late.call],
  }));
  const note =
    progressSeen === 0
      ? ' (the server sent no progress notifications)'
      : `, ${plural(progressSeen, 'progress notification')}`;
  return result(
    'no-progress-after-response',
    calls,
    ['answered call that asked for progress', 'answered calls that asked for progress'],
    violations,
    { because: 'no call was answered', missing: [] },
    note,
  );
}
