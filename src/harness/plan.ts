// The replay plan: which recorded call gets which fault, with every random choice drawn here from the
// seed, before anything is sent, so the same seed sends the same calls with the same faults.
import { createHash } from 'node:crypto';
import { keyFieldOf, readAnswer, STEERING_FIELDS, type ToolInfo } from './answers.js';
import type { AnswerConventions } from './conventions.js';
import { canonicalJson, type JsonObject } from './json.js';
import { HTTP_ONLY, LAUNCH_ONLY, type FaultKind } from './options.js';
import { createPrng, type Prng } from '../prng.js';
import type { RecordedCall } from './transcript.js';

/**
 * Faults aimed by time (at a share of the replay's own answer or run time) or by a restart: they run
 * after the transcript, each under a key of its own, when this replay has timed every tool, and the
 * SIGKILL ones share restarts.
 */
export const AIMED: readonly FaultKind[] = ['timeout', 'cancel', 'stream-broken', 'kill-between', 'kill-mid-run'];

/**
 * How a recorded call is replayed: `keyed` calls carry an idempotency key and get every fault;
 * `idempotent` ones (idempotentHint, no key) get every fault but a changed-arguments retry; `plain`
 * ones are sent once, as recorded.
 */
export type SubjectKind = 'keyed' | 'idempotent' | 'plain';

export interface Subject {
  call: RecordedCall;
  info: ToolInfo | undefined;
  kind: SubjectKind;
  /** Why a plain call gets no faults, for the report. */
  plainBecause: string | undefined;
}

export interface ChangedArgument {
  field: string;
  value: unknown;
}

export interface Case {
  /** From 1, in the order the cases run. */
  n: number;
  subject: Subject;
  fault: FaultKind | null;
  /** A case beyond the first for its call: it runs under a key of its own, after the transcript. */
  extra: boolean;
  /** Copies sent by duplicate (one after another) and burst (all at once). */
  copies: number;
  /**
   * The aimed faults: how far into the call (timeout, cancel, stream-broken, and kill-mid-run on a
   * server without a poll tool) or into the run (kill-mid-run) they strike, as a share of the time
   * this replay measured for the tool.
   */
  aimAt: number;
  /** changed-args: the one argument the conflicting retry changes. */
  changed: ChangedArgument | null;
  /** A SIGKILL case: the restart it shares with the others of its batch, from 1. */
  batch: number | null;
}

export interface Plan {
  cases: Case[];
  /** Fault kinds asked for that no recorded call could take, with the reason. */
  unused: { fault: FaultKind; reason: string }[];
}

/** What the target allows: a restart (a server replay launched), a broken stream (one over HTTP). */
export interface Abilities {
  canRestart: boolean;
  overHttp: boolean;
}

/** The server refused the call when it was recorded (a JSON-RPC error, or an error that is no run's answer). */
export function wasRefused(call: RecordedCall, c: AnswerConventions): boolean {
  return call.outcome === 'error' || (call.result !== undefined && readAnswer(call.result, c).refused);
}

export function classify(
  call: RecordedCall,
  info: ToolInfo | undefined,
  c: AnswerConventions & { keyArgument: string | undefined },
): Subject {
  const plain = (because: string): Subject => ({ call, info, kind: 'plain', plainBecause: because });
  if (info === undefined) return plain('the server does not offer this tool');
  if (wasRefused(call, c)) return plain('it was refused when recorded');
  if (call.arguments.dry_run === true) return plain('a dry run creates nothing');
  if (info.readOnlyHint === true) return plain('the tool is read-only');
  if (keyFieldOf(info, call.arguments, c.keyArgument) !== null)
    return { call, info, kind: 'keyed', plainBecause: undefined };
  if (info.idempotentHint === true) return { call, info, kind: 'idempotent', plainBecause: undefined };
  return plain('the tool takes no idempotency key and does not claim idempotentHint');
}

/** A key of the same shape for every replay with one seed: a UUID, which every key rule we know accepts. */
export function freshKey(seed: number, recordedKey: string, extraCase?: number): string {
  const hex = createHash('sha256')
    .update(`${seed}\u0000${recordedKey}\u0000${extraCase ?? ''}`)
    .digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Scalar arguments that say what is asked for (not the key, not how to answer). */
function changeableFields(args: JsonObject, keyField: string): string[] {
  return Object.keys(args).filter(
    (field) =>
      field !== keyField && !STEERING_FIELDS.has(field) && ['string', 'number', 'boolean'].includes(typeof args[field]),
  );
}

/**
 * One top-level argument changed so the request differs but would still pass validation: another
 * enum value, a string with a suffix, a number stepped within its bounds, a boolean flipped.
 */
export function changeArgument(
  args: JsonObject,
  info: ToolInfo | undefined,
  keyField: string,
  prng: Prng,
): ChangedArgument | null {
  const candidates = changeableFields(args, keyField);
  if (candidates.length === 0) return null;
  const field = prng.pick(candidates);
  const value = args[field];
  const schema = info?.properties[field] ?? {};
  if (Array.isArray(schema.enum)) {
    const others = schema.enum.filter((option) => option !== value);
    if (others.length > 0) return { field, value: prng.pick(others) };
  }
  if (typeof value === 'boolean') return { field, value: !value };
  if (typeof value === 'number') {
    const up = value + 1;
    return { field, value: schema.maximum !== undefined && up > schema.maximum ? value - 1 : up };
  }
  const text = String(value);
  const suffixed = `${text} (changed)`;
  if (schema.maxLength === undefined || suffixed.length <= schema.maxLength) return { field, value: suffixed };
  return { field, value: text.slice(0, -1) + (text.endsWith('x') ? 'y' : 'x') };
}

function applicable(fault: FaultKind, subject: Subject, can: Abilities, keyArgument: string | undefined): boolean {
  if (subject.kind === 'plain') return false;
  if (LAUNCH_ONLY.includes(fault) && !can.canRestart) return false;
  if (HTTP_ONLY.includes(fault) && !can.overHttp) return false;
  if (fault === 'changed-args') {
    const keyField = keyFieldOf(subject.info, subject.call.arguments, keyArgument);
    return (
      subject.kind === 'keyed' && keyField !== null && changeableFields(subject.call.arguments, keyField).length > 0
    );
  }
  return true;
}

function shuffle<T>(items: readonly T[], prng: Prng): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export interface PlanOptions extends Abilities {
  seed: number;
  burst: number;
  keyArgument: string | undefined;
}

/**
 * Every fault kind asked for runs at least once, and every call that can take a fault takes one in
 * its place in the transcript. A call's other kinds, and every aimed one, run after the transcript,
 * each under a key of its own so that the cases do not meet.
 */
export function makePlan(subjects: readonly Subject[], faults: readonly FaultKind[], options: PlanOptions): Plan {
  const prng = createPrng(options.seed);
  const assigned = new Map<Subject, FaultKind[]>(subjects.map((s) => [s, []]));
  const unused: Plan['unused'] = [];
  const faultable = subjects.filter((s) => s.kind !== 'plain');
  const usableFor = (subject: Subject, kinds: readonly FaultKind[]) =>
    kinds.filter((fault) => applicable(fault, subject, options, options.keyArgument));

  for (const fault of shuffle(faults, prng)) {
    const candidates = faultable.filter((s) => applicable(fault, s, options, options.keyArgument));
    if (candidates.length === 0) {
      unused.push({ fault, reason: reasonUnused(fault, faultable.length, options) });
      continue;
    }
    // Spread the kinds over the calls; between equally used calls, keyed ones first (they isolate).
    const load = (s: Subject) => assigned.get(s)!.length * 2 + (s.kind === 'keyed' ? 0 : 1);
    const least = Math.min(...candidates.map(load));
    assigned.get(prng.pick(candidates.filter((s) => load(s) === least)))!.push(fault);
  }
  const inPlace = faults.filter((fault) => !AIMED.includes(fault));
  for (const subject of faultable) {
    const kinds = assigned.get(subject)!;
    const here = usableFor(subject, inPlace);
    if (!kinds.some((fault) => !AIMED.includes(fault)) && here.length > 0) kinds.unshift(prng.pick(here));
    else if (kinds.length === 0 && usableFor(subject, faults).length > 0)
      kinds.push(prng.pick(usableFor(subject, faults)));
  }

  const cases: Case[] = [];
  const extras: [Subject, FaultKind][] = [];
  const caseOf = (subject: Subject, fault: FaultKind | null, extra: boolean): Case => {
    const keyField = keyFieldOf(subject.info, subject.call.arguments, options.keyArgument);
    return {
      n: 0,
      subject,
      fault,
      extra,
      copies: fault === 'burst' ? options.burst : fault === 'duplicate' ? prng.int(2, 3) : 1,
      aimAt: fault !== null && AIMED.includes(fault) ? Math.round(prng.range(0.2, 0.8) * 100) / 100 : 0,
      changed:
        fault === 'changed-args' && keyField !== null
          ? changeArgument(subject.call.arguments, subject.info, keyField, prng)
          : null,
      batch: null,
    };
  };
  for (const subject of subjects) {
    const kinds = assigned.get(subject)!;
    const first = kinds.find((fault) => !AIMED.includes(fault)) ?? null;
    cases.push(caseOf(subject, first, false));
    for (const fault of kinds) if (fault !== first) extras.push([subject, fault]);
  }
  // Extras in the order: other in-place kinds, the aimed ones by time, then the SIGKILL ones together.
  const rank = (fault: FaultKind) => (LAUNCH_ONLY.includes(fault) ? 2 : AIMED.includes(fault) ? 1 : 0);
  const ordered = extras
    .map((extra, i) => ({ extra, i }))
    .sort((a, b) => rank(a.extra[1]) - rank(b.extra[1]) || a.i - b.i);
  for (const {
    extra: [subject, fault],
  } of ordered)
    cases.push(caseOf(subject, fault, true));
  cases.forEach((c, i) => (c.n = i + 1));
  assignBatches(cases.filter((c) => c.fault !== null && LAUNCH_ONLY.includes(c.fault)));
  return { cases, unused };
}

/**
 * SIGKILL cases share a restart unless they would meet: an extra keyed case has a key of its own, but
 * two cases of one request to a tool without a key are the same request, and each needs a restart.
 */
function assignBatches(kills: Case[]): void {
  const batches: Set<string>[] = [];
  for (const c of kills) {
    const who =
      c.subject.kind === 'keyed' ? `case ${c.n}` : `${c.subject.call.tool} ${canonicalJson(c.subject.call.arguments)}`;
    let index = batches.findIndex((batch) => !batch.has(who));
    if (index < 0) index = batches.push(new Set()) - 1;
    batches[index]!.add(who);
    c.batch = index + 1;
  }
}

function reasonUnused(fault: FaultKind, faultable: number, can: Abilities): string {
  if (faultable === 0)
    return 'no recorded call can take a fault (every one is read-only, refused, or to a tool without a key or idempotentHint)';
  if (LAUNCH_ONLY.includes(fault) && !can.canRestart) return 'it needs a server replay launches itself (--server)';
  if (HTTP_ONLY.includes(fault) && !can.overHttp)
    return 'it needs a server reached over HTTP (--url; with --server too, replay launches it)';
  if (fault === 'changed-args') return 'no recorded call has an idempotency key and an argument that can change';
  return 'no recorded call can take it';
}
