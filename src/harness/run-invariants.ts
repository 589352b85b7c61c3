// The invariants judged run by run, from what became of each once the faults were over: billed
// once, not lost, and ended within the bound.
import { isFinishedPhase, isTerminalPhase } from './answers.js';
import type { Exchange } from './exchange.js';
import {
  groupName,
  groupsOf,
  hasRun,
  MISSING,
  noRunsBecause,
  plural,
  result,
  runsOf,
  type Evidence,
  type InvariantResult,
  type Missing,
  type Violation,
} from './verdicts.js';

export function oneChargePerRun(evidence: Evidence): InvariantResult {
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

export function noAcknowledgedRunLost(evidence: Evidence): InvariantResult {
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
export function terminalWithinBound({ surface, settled, exchanges, settleMs, conventions }: Evidence): InvariantResult {
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
