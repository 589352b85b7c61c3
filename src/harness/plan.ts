// The replay plan: which recorded call gets which fault, with every random choice drawn here from the
// seed, before anything is sent, so the same seed sends the same calls with the same faults.
import { createHash } from 'node:crypto';
import { createPrng, type Prng } from '../compose/prng.js';
import { isKeyName, readAnswer, STEERING_FIELDS, type ToolInfo } from './answers.js';
import { LAUNCH_ONLY, type FaultKind } from './options.js';
import type { JsonObject, RecordedCall } from './transcript.js';

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
  /** timeout: when the first request is aborted, after it is sent. */
  abortAfterMs: number;
  /** changed-args: the one argument the conflicting retry changes. */
  changed: ChangedArgument | null;
  /** kill-mid-run: how far into the run, in phases (1.5 is halfway through the second), to SIGKILL. */
  killAtPhase: number;
}

export interface Plan {
  cases: Case[];
  /** Fault kinds asked for that no recorded call could take, with the reason. */
  unused: { fault: FaultKind; reason: string }[];
}

/** The argument holding the idempotency key: the one the tool declares, else one named like a key. */
export function keyFieldOf(info: ToolInfo | undefined, args: JsonObject): string | null {
  const field = info?.keyField ?? Object.keys(args).find(isKeyName) ?? null;
  return field !== null && typeof args[field] === 'string' ? field : null;
}

/** The server refused the call when it was recorded (a JSON-RPC error, or an error naming no run). */
export function wasRefused(call: RecordedCall): boolean {
  return call.outcome === 'error' || (call.result !== undefined && readAnswer(call.result).refused);
}

export function classify(call: RecordedCall, info: ToolInfo | undefined): Subject {
  const plain = (because: string): Subject => ({ call, info, kind: 'plain', plainBecause: because });
  if (info === undefined) return plain('the server does not offer this tool');
  if (wasRefused(call)) return plain('it was refused when recorded');
  if (call.arguments.dry_run === true) return plain('a dry run creates nothing');
  if (info.readOnlyHint === true) return plain('the tool is read-only');
  if (keyFieldOf(info, call.arguments) !== null) return { call, info, kind: 'keyed', plainBecause: undefined };
  if (info.idempotentHint === true) return { call, info, kind: 'idempotent', plainBecause: undefined };
  return plain('the tool takes no idempotency key and does not claim idempotentHint');
}

/** A key of the same shape for every replay with one seed: a UUID, which every key rule we know accepts. */
export function freshKey(seed: number, recordedKey: string, extraCase?: number): string {
  const hex = createHash('sha256').update(`${seed}\u0000${recordedKey}\u0000${extraCase ?? ''}`).digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Scalar arguments that say what is asked for (not the key, not how to answer). */
function changeableFields(args: JsonObject, keyField: string): string[] {
  return Object.keys(args).filter(
    (field) => field !== keyField && !STEERING_FIELDS.has(field) && ['string', 'number', 'boolean'].includes(typeof args[field]),
  );
}

/**
 * One top-level argument changed so the request differs but would still pass validation: another
 * enum value, a string with a suffix, a number stepped within its bounds, a boolean flipped.
 */
export function changeArgument(args: JsonObject, info: ToolInfo | undefined, keyField: string, prng: Prng): ChangedArgument | null {
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

function applicable(fault: FaultKind, subject: Subject, canRestart: boolean): boolean {
  if (subject.kind === 'plain') return false;
  if (LAUNCH_ONLY.includes(fault) && !canRestart) return false;
  if (fault === 'changed-args') {
    const keyField = keyFieldOf(subject.info, subject.call.arguments);
    return subject.kind === 'keyed' && keyField !== null && changeableFields(subject.call.arguments, keyField).length > 0;
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

/**
 * Every fault kind asked for runs at least once, and every call that can take a fault takes one.
 * A call given several kinds runs the first in its place in the transcript and the others after it,
 * each under a key of its own so that the cases do not meet.
 */
export function makePlan(subjects: readonly Subject[], faults: readonly FaultKind[], options: { seed: number; canRestart: boolean; burst: number }): Plan {
  const prng = createPrng(options.seed);
  const assigned = new Map<Subject, FaultKind[]>(subjects.map((s) => [s, []]));
  const unused: Plan['unused'] = [];
  const faultable = subjects.filter((s) => s.kind !== 'plain');

  for (const fault of shuffle(faults, prng)) {
    const candidates = faultable.filter((s) => applicable(fault, s, options.canRestart));
    if (candidates.length === 0) {
      unused.push({ fault, reason: reasonUnused(fault, faultable.length, options.canRestart) });
      continue;
    }
    // Spread the kinds over the calls; between equally used calls, keyed ones first (they isolate).
    const load = (s: Subject) => assigned.get(s)!.length * 2 + (s.kind === 'keyed' ? 0 : 1);
    const least = Math.min(...candidates.map(load));
    assigned.get(prng.pick(candidates.filter((s) => load(s) === least)))!.push(fault);
  }
  for (const subject of faultable) {
    const kinds = assigned.get(subject)!;
    const usable = faults.filter((fault) => applicable(fault, subject, options.canRestart));
    if (kinds.length === 0 && usable.length > 0) kinds.push(prng.pick(usable));
  }

  const cases: Case[] = [];
  const extras: [Subject, FaultKind][] = [];
  const caseOf = (subject: Subject, fault: FaultKind | null, extra: boolean): Case => {
    const keyField = keyFieldOf(subject.info, subject.call.arguments);
    return {
      n: 0,
      subject,
      fault,
      extra,
      copies: fault === 'burst' ? options.burst : fault === 'duplicate' ? prng.int(2, 3) : 1,
      abortAfterMs: fault === 'timeout' ? Math.round(prng.range(0, Math.min(subject.call.ms, 2000)) * 10) / 10 : 0,
      changed: fault === 'changed-args' && keyField !== null ? changeArgument(subject.call.arguments, subject.info, keyField, prng) : null,
      killAtPhase: fault === 'kill-mid-run' ? prng.int(0, 1) + prng.range(0.2, 0.8) : 0,
    };
  };
  for (const subject of subjects) {
    const [first = null, ...more] = assigned.get(subject)!;
    cases.push(caseOf(subject, first, false));
    for (const fault of more) extras.push([subject, fault]);
  }
  for (const [subject, fault] of extras) cases.push(caseOf(subject, fault, true));
  cases.forEach((c, i) => (c.n = i + 1));
  return { cases, unused };
}

function reasonUnused(fault: FaultKind, faultable: number, canRestart: boolean): string {
  if (faultable === 0) return 'no recorded call can take a fault (every one is read-only, refused, or to a tool without a key or idempotentHint)';
  if (LAUNCH_ONLY.includes(fault) && !canRestart) return 'it needs a server replay launches itself (--server)';
  if (fault === 'changed-args') return 'no recorded call has an idempotency key and an argument that can change';
  return 'no recorded call can take it';
}
