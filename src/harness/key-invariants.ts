// The invariants judged key by key, from what each call was answered: one run per key, the same
// answer to every replay of it, and a changed request under a used key refused without effect.
import { isFinishedPhase } from './answers.js';
import type { Exchange } from './exchange.js';
import {
  groupName,
  groupsOf,
  hasRun,
  MISSING,
  noRunsBecause,
  plural,
  result,
  usageName,
  type Answered,
  type Evidence,
  type InvariantResult,
  type Violation,
} from './verdicts.js';

const accepted = (e: Exchange): e is Answered => e.answer !== undefined && !e.answer.refused;
const caseOf = (e: Exchange) => e.id.split('.')[0];

export function oneRunPerKey({ exchanges, usageBefore, usageAfter, surface }: Evidence): InvariantResult {
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

export function sameAnswer({ exchanges, conventions }: Evidence): InvariantResult {
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

export function conflicts({ exchanges, surface }: Evidence): InvariantResult[] {
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
