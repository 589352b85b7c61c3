// What the invariant checks share: the invariants by id, the evidence they are judged from, and the
// verdict each check gives: held, broken (naming the calls that broke it), or not checked, and why,
// naming the convention that was missing and the flag or profile field that supplies it.
import type { Answer, Usage } from './answers.js';
import { SUPPLIED_BY, type AnswerConventions, type ConventionName } from './conventions.js';
import type { Exchange, LateProgress, RunResource } from './exchange.js';

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

export type Answered = Exchange & { answer: Answer };
export const hasRun = (e: Exchange): e is Answered & { answer: { runId: string } } => e.answer?.runId !== undefined;
export const plural = (n: number, word: string, words = `${word}s`) => `${n} ${n === 1 ? word : words}`;
export const usageName = (surface: Surface) => ('tool' in surface.usage ? surface.usage.tool : 'the usage tool');
export const groupName = (e: Exchange) => `${e.tool} ${e.key === undefined ? '(same arguments)' : `key ${e.key}`}`;

const convention = (name: keyof typeof SUPPLIED_BY, what: string): Missing => ({
  convention: what,
  ...SUPPLIED_BY[name],
});
const lacking = (what: string): Missing => ({ convention: what, flag: null, profile_field: null });
export const MISSING = {
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
export function result(
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
export function groupsOf(exchanges: readonly Exchange[]): Map<string, Exchange[]> {
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

/** Why no run could be followed from the answers: no grouped call at all, or answers that named no run. */
export function noRunsBecause(exchanges: readonly Exchange[]): { because: string; missing: Missing[] } {
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
