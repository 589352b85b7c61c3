// The ledger's decisions, pure functions over run records: what an existing key means for a create,
// what a claim, a phase move or a failed attempt makes of a run, what cancel answers, what a list query
// may ask. The Ledger calls them inside its store transactions and does only the I/O around them.
import { nanoid } from 'nanoid';
import { InternalError, NotFoundError, ValidationFailedError } from '../errors.js';
import { assertValidKey, differingFields, fingerprint } from './fingerprint.js';
import { canAdvance, isTerminal, Phase, PHASES, phaseProgress } from './phases.js';
import type { CheckedListQuery, RunKey, RunRecord, UsageRows } from './store.js';
import type { Conflict, CreateRequest, JsonObject, ListQuery, PhaseEntry, Run, RunError, Usage } from './types.js';

/** PostgreSQL: how many connections a process opens for runs, unless told. */
export const DEFAULT_POOL_SIZE = 10;
export const DEFAULT_LEASE_MS = 30_000;
export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Stream events only serve reconnects, so they are kept a day. */
export const EVENT_RETENTION_MS = 24 * 3600 * 1000;
export const DEFAULT_PAGE = 20;
export const MAX_PAGE = 100;

const iso = (ms: number): string => new Date(ms).toISOString();

// ---- creates -------------------------------------------------------------------------------------

function requireName(value: string, field: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > 200) {
    throw new ValidationFailedError([{ field, rule: 'must be a non-empty string of at most 200 characters' }]);
  }
}

/** Checks what a create names and returns its fingerprint; throws validation_failed before any I/O. */
export function checkCreate(req: CreateRequest): string {
  requireName(req.tenant, 'tenant');
  requireName(req.tool, 'tool');
  assertValidKey(req.idempotencyKey);
  if (!Number.isInteger(req.cost) || req.cost < 0)
    throw new InternalError(`cost must be a whole number, got ${req.cost}`);
  return req.fingerprint ?? fingerprint(req.args);
}

export function keyOf(req: CreateRequest): RunKey {
  return { tenant: req.tenant, executor: req.executor ?? 'engine', tool: req.tool, idempotencyKey: req.idempotencyKey };
}

/** A key past retention is forgotten: once its run is terminal (or deleted), a create makes a new run. */
export function isExpired(
  run: Pick<RunRecord, 'createdAt' | 'phase' | 'deletedAt'>,
  now: number,
  retentionMs: number,
): boolean {
  return run.createdAt <= now - retentionMs && (isTerminal(run.phase) || run.deletedAt !== null);
}

export type Judgement = 'replay' | 'conflict' | 'deleted' | 'expired';

/** What an existing run under the same key means for a create with fingerprint `fp`. */
export function judgeExisting(run: RunRecord, fp: string, now: number, retentionMs: number): Judgement {
  if (isExpired(run, now, retentionMs)) return 'expired';
  if (run.deletedAt !== null) return 'deleted';
  return run.fingerprint === fp ? 'replay' : 'conflict';
}

/** The refusal for a key that belongs to other arguments, naming the fields that differ. */
export function conflictOf(
  run: Pick<RunRecord, 'id' | 'createdAt'>,
  storedArgs: JsonObject,
  args: JsonObject,
): Conflict {
  return {
    kind: 'conflict',
    runId: run.id,
    createdAt: iso(run.createdAt),
    differingFields: differingFields(storedArgs, args),
  };
}

/** The record a new run starts with; one started by a worker (`startedBy`) is already leased to it. */
export function newRecord(
  req: CreateRequest,
  fp: string,
  now: number,
  leaseMs: number,
  startedBy: string | null = null,
): RunRecord {
  return {
    id: `run_${nanoid()}`,
    ...keyOf(req),
    fingerprint: fp,
    cost: req.cost,
    phase: Phase.queued,
    progress: 0,
    composingAt: null,
    renderingAt: null,
    endedAt: null,
    error: null,
    attempts: startedBy === null ? 0 : 1,
    stalls: 0,
    leaseOwner: startedBy,
    leaseExpiresAt: startedBy === null ? null : now + leaseMs,
    createdAt: now,
    updatedAt: now,
    deletedAt: null,
  };
}

// ---- reading -------------------------------------------------------------------------------------

export function phaseHistory(
  run: Pick<RunRecord, 'phase' | 'createdAt' | 'composingAt' | 'renderingAt' | 'endedAt'>,
): PhaseEntry[] {
  const history: PhaseEntry[] = [{ phase: Phase.queued, at: iso(run.createdAt) }];
  if (run.composingAt !== null) history.push({ phase: Phase.composing, at: iso(run.composingAt) });
  if (run.renderingAt !== null) history.push({ phase: Phase.rendering, at: iso(run.renderingAt) });
  if (run.endedAt !== null) history.push({ phase: run.phase, at: iso(run.endedAt) });
  return history;
}

export function toRun(run: RunRecord, args: JsonObject, result: JsonObject | null): Run {
  const phases = phaseHistory(run);
  const expires = run.leaseExpiresAt === null ? null : iso(run.leaseExpiresAt);
  return {
    id: run.id,
    tenant: run.tenant,
    tool: run.tool,
    idempotencyKey: run.idempotencyKey,
    executor: run.executor,
    fingerprint: run.fingerprint,
    args,
    cost: run.cost,
    phase: run.phase,
    phases,
    progress: run.progress,
    result,
    error: run.error,
    attempts: run.attempts,
    stalls: run.stalls,
    lease: run.leaseOwner === null || expires === null ? null : { holder: run.leaseOwner, expiresAt: expires },
    retryAt: run.leaseOwner === null && !isTerminal(run.phase) ? expires : null,
    // The queued entry is stamped with createdAt: one date format fewer.
    createdAt: phases[0]!.at,
  };
}

/** Whether two reads of a run found the same values: a run unchanged since it was last built. */
export function sameRecord(a: RunRecord, b: RunRecord): boolean {
  for (const name of Object.keys(a) as (keyof RunRecord)[]) {
    if (name === 'error' ? JSON.stringify(a.error) !== JSON.stringify(b.error) : a[name] !== b[name]) return false;
  }
  return true;
}

export function runNotFound(runId: string): NotFoundError {
  return new NotFoundError(`Run ${runId}`, { run_id: runId });
}

export function keyNotFound(tool: string): NotFoundError {
  return new NotFoundError(
    `No run of ${tool} for that idempotency_key`,
    { tool },
    'Check the tool name and key; a run is found only by the tool it was created with.',
  );
}

export function assetNotFound(runId: string, n: number): NotFoundError {
  return new NotFoundError(`Asset ${n} of run ${runId}`, { run_id: runId, n }, 'poll_run lists the assets a run has.');
}

export function deletedRunError(runId: string): NotFoundError {
  return new NotFoundError(
    `Run ${runId} (deleted)`,
    { run_id: runId, deleted: true },
    'This run was deleted; its key stays reserved until the retention window ends. Use a new idempotency_key for a new run.',
  );
}

/** The run a tenant may see: another tenant's run, or none, is not found; a deleted one says so. */
export function visible<R extends Pick<RunRecord, 'id' | 'tenant' | 'deletedAt'>>(
  run: R | undefined,
  tenant: string,
  runId: string,
): R {
  if (run === undefined || run.tenant !== tenant) throw runNotFound(runId);
  if (run.deletedAt !== null) throw deletedRunError(runId);
  return run;
}

/** Whether `owner` may still write to the run: it holds the lease, and the run is live and not deleted. */
export function holdsLease<R extends RunRecord>(run: R | undefined, owner: string): run is R {
  return run !== undefined && run.leaseOwner === owner && !isTerminal(run.phase) && run.deletedAt === null;
}

// ---- leases --------------------------------------------------------------------------------------

/**
 * After this many failed attempts in a row, each failed for the run's own reason (its renderer died
 * or ran too long on it), the run is the cause: it is failed. Crashes of the workers never count.
 */
export const MAX_STALLS = 5;

/**
 * How long a run waits after its k-th failed attempt in a row before it is tried again: a tenth of
 * the lease, doubling, at most ten leases. It follows the lease, which says how soon this deployment
 * wants a run resumed.
 */
export function takeoverBackoffMs(stalls: number, leaseMs: number): number {
  return Math.round(Math.min(10 * leaseMs, (leaseMs / 10) * 2 ** Math.max(0, stalls - 1)));
}

/**
 * Whether a live run may be claimed now: no holder and no back-off pending, its holder's lease has run
 * out, or its holder is known to be gone (a crash is no reason to wait, and no failure of the run's).
 */
export function isClaimable(
  run: RunRecord,
  now: number,
  holderGone: (owner: string) => boolean = () => false,
): boolean {
  if (isTerminal(run.phase) || run.deletedAt !== null) return false;
  if (run.leaseExpiresAt === null || run.leaseExpiresAt <= now) return true;
  return run.leaseOwner !== null && holderGone(run.leaseOwner);
}

/** `run` leased to `owner`: a claim counts an attempt and nothing else. */
export function leasedTo(run: RunRecord, owner: string, now: number, leaseMs: number): RunRecord {
  return { ...run, leaseOwner: owner, leaseExpiresAt: now + leaseMs, attempts: run.attempts + 1 };
}

/** No one holds it: claimable at once. */
export function released(run: RunRecord): RunRecord {
  return { ...run, leaseOwner: null, leaseExpiresAt: null };
}

/** The holder made progress (an image, a checkpoint): its lease is extended and failures in a row start again. */
export function progressed(run: RunRecord, progress: number, now: number, leaseMs: number): RunRecord {
  return {
    ...run,
    progress: Math.max(run.progress, progress),
    leaseExpiresAt: now + leaseMs,
    stalls: 0,
    updatedAt: Math.max(now, run.updatedAt),
  };
}

/**
 * What an attempt that failed for the run's own reason makes of it: no one holds it until a back-off
 * has passed, or, at the bound, the error that fails it, naming its attempts and the last failure.
 */
export function afterFailedAttempt(
  run: RunRecord,
  failure: RunError,
  now: number,
  leaseMs: number,
): { run: RunRecord; giveUp: RunError | null } {
  const stalls = run.stalls + 1;
  const waiting = { ...run, stalls, leaseOwner: null, leaseExpiresAt: now + takeoverBackoffMs(stalls, leaseMs) };
  if (stalls < MAX_STALLS) return { run: waiting, giveUp: null };
  return {
    run: waiting,
    giveUp: {
      code: 'generation_failed',
      message: `Gave up after ${run.attempts} attempts, the last ${stalls} of them failing in a row on the run itself; the last: ${failure.message}`,
      details: { attempts: run.attempts, failed_in_a_row: stalls, phase: run.phase, last_failure: failure },
    },
  };
}

// ---- phase moves ---------------------------------------------------------------------------------

export interface PhaseMove {
  run: RunRecord;
  /** Recovery points only serve a run that may still be resumed; a terminal one drops them. */
  dropRecovery: boolean;
  /** Write the run's one charge, in the same transaction. */
  charge: boolean;
}

/** Moving `run` to `to`; refuses a move that is not forward. A move is progress. */
export function moved(run: RunRecord, to: Phase, now: number, leaseMs: number, error?: RunError): PhaseMove {
  if (!canAdvance(run.phase, to)) throw new InternalError(`run ${run.id} cannot move from ${run.phase} to ${to}`);
  // Timestamps only rise, even if this host's clock is behind the one that wrote last.
  const at = Math.max(now, run.updatedAt);
  const terminal = isTerminal(to);
  return {
    run: {
      ...run,
      phase: to,
      progress: to === Phase.done ? 1 : Math.max(run.progress, phaseProgress(to)),
      composingAt: to === Phase.composing ? at : run.composingAt,
      renderingAt: to === Phase.rendering ? at : run.renderingAt,
      endedAt: terminal ? at : null,
      error: error ?? run.error,
      stalls: terminal ? run.stalls : 0,
      // A terminal run's lease ends with it.
      leaseOwner: terminal ? null : run.leaseOwner,
      leaseExpiresAt: terminal ? null : now + leaseMs,
      updatedAt: at,
    },
    dropRecovery: terminal,
    charge: to === Phase.done,
  };
}

export type CancelDecision = 'cancel' | 'already_canceled' | 'already_finished';

export function cancelDecision(phase: Phase): CancelDecision {
  if (phase === Phase.canceled) return 'already_canceled';
  return isTerminal(phase) ? 'already_finished' : 'cancel';
}

/** A tenant's usage from its rows: runs and replays by tool, charges by tool and by provider. */
export function usageOf(tenant: string, rows: UsageRows): Usage {
  const usage: Usage = { tenant, runs: 0, charges: 0, credits: 0, replaysAbsorbed: 0, byTool: {}, byProvider: {} };
  const forTool = (tool: string) => (usage.byTool[tool] ??= { runs: 0, charges: 0, credits: 0, replaysAbsorbed: 0 });
  for (const r of rows.runs) {
    Object.assign(forTool(r.tool), { runs: r.runs, replaysAbsorbed: r.replays });
    usage.runs += r.runs;
    usage.replaysAbsorbed += r.replays;
  }
  for (const c of rows.charges) {
    for (const total of [forTool(c.tool), (usage.byProvider[c.provider] ??= { charges: 0, credits: 0 }), usage]) {
      total.charges += c.charges;
      total.credits += c.credits;
    }
  }
  return usage;
}

// ---- listing -------------------------------------------------------------------------------------

export function encodeCursor(run: Pick<RunRecord, 'createdAt' | 'id'>): string {
  return Buffer.from(JSON.stringify([run.createdAt, run.id])).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof createdAt === 'number' && typeof id === 'string') return { createdAt, id };
  } catch {
    // fall through to the typed error
  }
  throw new ValidationFailedError([{ field: 'cursor', rule: 'must be a next_cursor value returned by list_runs' }]);
}

export function checkListQuery(query: ListQuery): CheckedListQuery {
  const limit = query.limit ?? DEFAULT_PAGE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new ValidationFailedError([{ field: 'limit', rule: `must be a whole number from 1 to ${MAX_PAGE}` }]);
  }
  if (query.phase !== undefined && !PHASES.includes(query.phase)) {
    throw new ValidationFailedError([{ field: 'phase', rule: `must be one of ${PHASES.join(', ')}` }]);
  }
  return {
    limit,
    ...(query.tool === undefined ? {} : { tool: query.tool }),
    ...(query.phase === undefined ? {} : { phase: query.phase }),
    ...(query.cursor === undefined ? {} : { before: decodeCursor(query.cursor) }),
  };
}

/** A page from `limit + 1` runs fetched newest first: the extra one only says there is more. */
export function pageOf<R extends Pick<RunRecord, 'createdAt' | 'id'>>(
  runs: R[],
  limit: number,
): { runs: R[]; nextCursor: string | null } {
  const page = runs.slice(0, limit);
  const last = page[page.length - 1];
  return { runs: page, nextCursor: runs.length > limit && last !== undefined ? encodeCursor(last) : null };
}
