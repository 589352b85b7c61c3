// The ledger's decisions, written once for every backend: what an existing key means for a create,
// what a phase move writes, what cancel answers, what a list query may ask. Pure functions over plain
// rows; each backend calls them inside its own transactions and does only the I/O around them.
import { nanoid } from 'nanoid';
import { InternalError, NotFoundError, ValidationFailedError } from '../errors.js';
import { assertValidKey, differingFields, fingerprint } from './fingerprint.js';
import { canAdvance, isTerminal, Phase, PHASES, phaseProgress } from './phases.js';
import type { ClaimedRun, Conflict, CreateRequest, JsonObject, ListQuery, PhaseEntry, Run, RunError } from './types.js';

export const DEFAULT_LEASE_MS = 30_000;
export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Stream events only serve reconnects, so they are kept a day. */
export const EVENT_RETENTION_MS = 24 * 3600 * 1000;
export const DEFAULT_PAGE = 20;
export const MAX_PAGE = 100;

/**
 * The hot row of a run, as every backend stores it: what the key lookup reads on each replay. The
 * arguments, the recovery points and the result live apart (cold), so this row stays small.
 * Times are milliseconds since the epoch; JSON columns are text.
 */
export interface RunRow {
  id: string;
  tenant: string;
  tool: string;
  idem_key: string;
  fingerprint: string;
  cost: number;
  phase: Phase;
  progress: number;
  /** When the run entered each later phase; the queued entry is created_at. */
  composing_at: number | null;
  rendering_at: number | null;
  /** When it reached its terminal phase (done, failed or canceled). */
  ended_at: number | null;
  error: string | null;
  attempts: number;
  stalls: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  /** When the lease was last taken, and when its holder last made progress. */
  claimed_at: number | null;
  progressed_at: number | null;
  /** How long after this lease expires another worker must wait, if this attempt stalls. */
  stall_backoff_ms: number;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

/** What the fence reads for a key: the caller already knows tenant, tool and key. */
export type KeyedRow = Omit<RunRow, 'tenant' | 'tool' | 'idem_key' | 'lease_owner'>;

/** The columns of a KeyedRow, in the order every backend selects them. */
export const KEYED_NAMES = [
  'id', 'fingerprint', 'cost', 'phase', 'progress', 'composing_at', 'rendering_at', 'ended_at', 'error', 'attempts', 'stalls',
  'lease_expires_at', 'claimed_at', 'progressed_at', 'stall_backoff_ms', 'created_at', 'updated_at', 'deleted_at',
] as const satisfies readonly (keyof KeyedRow)[];
export const KEYED_COLUMNS = KEYED_NAMES.join(', ');
/** Every column of a RunRow. */
export const RUN_COLUMNS = `${KEYED_COLUMNS}, tenant, tool, idem_key, lease_owner`;

/** The cold columns of a run. */
export interface RunData {
  args: JsonObject;
  result: JsonObject | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export const newRunId = (): string => `run_${nanoid()}`;

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
  if (!Number.isInteger(req.cost) || req.cost < 0) throw new InternalError(`cost must be a whole number, got ${req.cost}`);
  return req.fingerprint ?? fingerprint(req.args);
}

/** A key past retention is forgotten: once its run is terminal (or deleted), a create makes a new run. */
export function isExpired(row: Pick<KeyedRow, 'created_at' | 'phase' | 'deleted_at'>, now: number, retentionMs: number): boolean {
  return row.created_at <= now - retentionMs && (isTerminal(row.phase) || row.deleted_at !== null);
}

export type Judgement = 'replay' | 'conflict' | 'deleted' | 'expired';

/** What an existing run under the same (tenant, tool, key) means for a create with `fp`. */
export function judgeExisting(row: KeyedRow, fp: string, now: number, retentionMs: number): Judgement {
  if (isExpired(row, now, retentionMs)) return 'expired';
  if (row.deleted_at !== null) return 'deleted';
  return row.fingerprint === fp ? 'replay' : 'conflict';
}

/** The refusal for a key that belongs to other arguments, naming the fields that differ. */
export function conflictOf(row: Pick<KeyedRow, 'id' | 'created_at'>, storedArgs: JsonObject, args: JsonObject): Conflict {
  return { kind: 'conflict', runId: row.id, createdAt: iso(row.created_at), differingFields: differingFields(storedArgs, args) };
}

/** The hot row a new run starts with; one created `startedBy` a worker is already leased to it. */
export function newRunRow(req: CreateRequest, fp: string, now: number, leaseMs: number): RunRow {
  const started = req.startedBy !== undefined;
  return {
    id: newRunId(),
    tenant: req.tenant,
    tool: req.tool,
    idem_key: req.idempotencyKey,
    fingerprint: fp,
    cost: req.cost,
    phase: Phase.queued,
    progress: 0,
    composing_at: null,
    rendering_at: null,
    ended_at: null,
    error: null,
    attempts: started ? 1 : 0,
    stalls: 0,
    lease_owner: req.startedBy ?? null,
    lease_expires_at: started ? now + leaseMs : null,
    claimed_at: started ? now : null,
    progressed_at: null,
    stall_backoff_ms: 0,
    created_at: now,
    updated_at: now,
    deleted_at: null,
  };
}

// ---- reading -------------------------------------------------------------------------------------

export function phaseHistory(row: Pick<KeyedRow, 'phase' | 'created_at' | 'composing_at' | 'rendering_at' | 'ended_at'>): PhaseEntry[] {
  const history: PhaseEntry[] = [{ phase: Phase.queued, at: iso(row.created_at) }];
  if (row.composing_at !== null) history.push({ phase: Phase.composing, at: iso(row.composing_at) });
  if (row.rendering_at !== null) history.push({ phase: Phase.rendering, at: iso(row.rendering_at) });
  if (row.ended_at !== null) history.push({ phase: row.phase, at: iso(row.ended_at) });
  return history;
}

export function toRun(row: KeyedRow, who: { tenant: string; tool: string; idem_key: string }, data: RunData): Run {
  const phases = phaseHistory(row);
  return {
    id: row.id,
    tenant: who.tenant,
    tool: who.tool,
    idempotencyKey: who.idem_key,
    fingerprint: row.fingerprint,
    args: data.args,
    cost: row.cost,
    phase: row.phase,
    phases,
    progress: row.progress,
    result: data.result,
    error: row.error === null ? null : (JSON.parse(row.error) as RunError),
    attempts: row.attempts,
    stalls: row.stalls,
    lease: row.lease_expires_at === null ? null : { expiresAt: iso(row.lease_expires_at), takeoverAt: iso(takeoverAt(row)) },
    // The queued entry is stamped with created_at: one date format fewer.
    createdAt: phases[0]!.at,
  };
}

export function toClaimedRun(run: Run, recovery: ClaimedRun['recovery'], assets: ClaimedRun['assets']): ClaimedRun {
  return { ...run, recovery, assets };
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
export function visibleRow<R extends Pick<RunRow, 'id' | 'tenant' | 'deleted_at'>>(row: R | undefined, tenant: string, runId: string): R {
  if (row === undefined || row.tenant !== tenant) throw runNotFound(runId);
  if (row.deleted_at !== null) throw deletedRunError(runId);
  return row;
}

/** Whether `owner` may still write to the run: it holds the lease, and the run is live and not deleted. */
export function holdsLease(row: Pick<RunRow, 'lease_owner' | 'phase' | 'deleted_at'> | undefined, owner: string): boolean {
  return row !== undefined && row.lease_owner === owner && !isTerminal(row.phase) && row.deleted_at === null;
}

// ---- claims --------------------------------------------------------------------------------------

/** After this many stalled attempts in a row the run is the cause, not its workers: it is failed. */
export const MAX_STALLS = 5;

/**
 * How long a run waits, after its k-th stalled attempt in a row, before another worker takes it: a
 * tenth of the lease, doubling, at most ten leases. It follows the lease, which says how soon this
 * deployment wants a dead worker's run taken over.
 */
export function takeoverBackoffMs(stalls: number, leaseMs: number): number {
  return Math.round(Math.min(10 * leaseMs, (leaseMs / 10) * 2 ** Math.max(0, stalls - 1)));
}

/**
 * When a held lease may be taken over: at its expiry if its attempt made progress, after the back-off
 * otherwise. A released lease (owner NULL) is claimable at once. Written twice, as SQL for the claim
 * query and as a function for what a run shows; keep the two together.
 */
export const TAKEOVER_AT_SQL = `lease_expires_at + CASE WHEN progressed_at >= claimed_at THEN 0 ELSE stall_backoff_ms END`;

export function takeoverAt(row: Pick<RunRow, 'lease_expires_at' | 'claimed_at' | 'progressed_at' | 'stall_backoff_ms'>): number {
  const progressed = row.progressed_at !== null && row.claimed_at !== null && row.progressed_at >= row.claimed_at;
  return (row.lease_expires_at ?? 0) + (progressed ? 0 : row.stall_backoff_ms);
}

/** The columns a claim writes. */
export interface ClaimUpdate {
  lease_owner: string;
  lease_expires_at: number;
  claimed_at: number;
  attempts: number;
  stalls: number;
  stall_backoff_ms: number;
}

/**
 * Claiming `row` for `owner`. The attempt before this one counts as a stall only if its worker
 * stopped holding the lease (it died, or abandoned the run) with no progress since it claimed;
 * progress resets the count, and a released lease leaves it as it was.
 */
export function claimUpdate(
  row: Pick<RunRow, 'lease_owner' | 'claimed_at' | 'progressed_at' | 'attempts' | 'stalls'>,
  owner: string,
  now: number,
  leaseMs: number,
): ClaimUpdate {
  const progressed = row.claimed_at !== null && row.progressed_at !== null && row.progressed_at >= row.claimed_at;
  const stalls = progressed ? 0 : row.lease_owner !== null ? row.stalls + 1 : row.stalls;
  return {
    lease_owner: owner,
    lease_expires_at: now + leaseMs,
    claimed_at: now,
    attempts: row.attempts + 1,
    stalls,
    stall_backoff_ms: takeoverBackoffMs(stalls + 1, leaseMs),
  };
}

/** Whether a run may be taken by claimRun: live, not deleted, and its lease free or past its takeover time. */
export function isClaimable(row: RunRow, now: number): boolean {
  return !isTerminal(row.phase) && row.deleted_at === null && (row.lease_owner === null || takeoverAt(row) <= now);
}

// ---- phase moves ---------------------------------------------------------------------------------

/** The columns one phase move writes, and whether it bills the run. */
export interface RunUpdate {
  phase: Phase;
  progress: number;
  composing_at: number | null;
  rendering_at: number | null;
  ended_at: number | null;
  error: string | null;
  /** Null for a terminal run: its lease ends with it. */
  lease_expires_at: number | null;
  keepLease: boolean;
  /** Recovery points only serve a run that may still be resumed; a terminal one drops them. */
  dropRecovery: boolean;
  /** Write the run's one charge, in the same transaction. */
  charge: boolean;
  /** A phase move is progress: it resets the run's stall count at the next claim. */
  progressed_at: number;
  updated_at: number;
}

/** What moving `row` to `to` writes; refuses a move that is not forward. */
export function nextRunState(row: RunRow, to: Phase, now: number, leaseMs: number, error?: RunError): RunUpdate {
  if (!canAdvance(row.phase, to)) throw new InternalError(`run ${row.id} cannot move from ${row.phase} to ${to}`);
  // Timestamps only rise, even if this host's clock is behind the one that wrote last.
  const at = Math.max(now, row.updated_at);
  const terminal = isTerminal(to);
  return {
    phase: to,
    progress: to === Phase.done ? 1 : Math.max(row.progress, phaseProgress(to)),
    composing_at: to === Phase.composing ? at : row.composing_at,
    rendering_at: to === Phase.rendering ? at : row.rendering_at,
    ended_at: terminal ? at : null,
    error: error === undefined ? row.error : JSON.stringify(error),
    lease_expires_at: terminal ? null : now + leaseMs,
    keepLease: !terminal,
    dropRecovery: terminal,
    charge: to === Phase.done,
    progressed_at: now,
    updated_at: at,
  };
}

export type CancelDecision = 'cancel' | 'already_canceled' | 'already_finished';

export function cancelDecision(phase: Phase): CancelDecision {
  if (phase === Phase.canceled) return 'already_canceled';
  return isTerminal(phase) ? 'already_finished' : 'cancel';
}

// ---- listing -------------------------------------------------------------------------------------

export interface CheckedListQuery {
  limit: number;
  tool?: string;
  phase?: Phase;
  /** Strictly older than this (created_at, id), from the cursor. */
  before?: { createdAt: number; id: string };
}

export function encodeCursor(row: Pick<RunRow, 'created_at' | 'id'>): string {
  return Buffer.from(JSON.stringify([row.created_at, row.id])).toString('base64url');
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

/** A page from `limit + 1` rows fetched newest first: the extra row only says there is more. */
export function pageOf<R extends Pick<RunRow, 'created_at' | 'id'>>(rows: R[], limit: number): { rows: R[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { rows: page, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last) : null };
}
