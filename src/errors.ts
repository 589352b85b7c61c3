// The one error taxonomy. The ledger, the engine and both transports throw these; the MCP boundary
// turns them into `isError` tool results whose text names the fix.

export const ErrorCode = {
  validationFailed: 'validation_failed',
  idempotencyKeyReused: 'idempotency_key_reused',
  notFound: 'not_found',
  unauthorized: 'unauthorized',
  storageUnavailable: 'storage_unavailable',
  generationFailed: 'generation_failed',
  outcomeUnknown: 'outcome_unknown',
  callInProgress: 'call_in_progress',
  upstreamUnavailable: 'upstream_unavailable',
  internalError: 'internal_error',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export type ErrorDetails = Record<string, unknown>;

export class RunledgerError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;
  /** What the caller should do next, in words an agent follows. */
  readonly fix: string;

  constructor(code: ErrorCode, message: string, opts: { details?: ErrorDetails; fix: string; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = opts.details ?? {};
    this.fix = opts.fix;
  }

  toJSON(): { code: ErrorCode; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export interface FieldProblem {
  field: string;
  rule: string;
}

/** "size must be one of ...": a rule follows its field's name; a rule of the whole call, "The arguments". */
function problemSentence({ field, rule }: FieldProblem): string {
  const sentence = `${field === '(arguments)' ? 'The arguments' : field} ${rule}`;
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

export class ValidationFailedError extends RunledgerError {
  constructor(problems: FieldProblem[]) {
    super(ErrorCode.validationFailed, `Invalid arguments: ${problems.map(problemSentence).join(' ')}`, {
      details: { problems },
      fix: 'Correct the named fields and call again; nothing was stored, so the same idempotency_key may be reused.',
    });
  }
}

/** How to get the first request's outcome, where a run tool can follow it. */
export const followWithPollRun = (runId: string): string =>
  `To follow the original request, poll_run with run_id ${runId}.`;

export class IdempotencyKeyReusedError extends RunledgerError {
  /** `follow` says how to get the original request's outcome on this surface (see followWithPollRun). */
  constructor(runId: string, differingFields: string[], createdAt: string, follow: string) {
    super(
      ErrorCode.idempotencyKeyReused,
      `This idempotency_key already belongs to run ${runId}, created with different arguments` +
        (differingFields.length > 0 ? ` (differing: ${differingFields.join(', ')})` : '') +
        '.',
      {
        details: { run_id: runId, differing_fields: differingFields, created_at: createdAt },
        fix: `${follow} To ask for something different, make a new idempotency_key. Nothing was created.`,
      },
    );
  }
}

export class NotFoundError extends RunledgerError {
  constructor(what: string, details: ErrorDetails = {}, fix = 'Check the id; list_runs shows the runs that exist.') {
    super(ErrorCode.notFound, `${what} was not found.`, { details, fix });
  }
}

export class UnauthorizedError extends RunledgerError {
  constructor(message = 'Missing or invalid bearer token.') {
    super(ErrorCode.unauthorized, message, { fix: 'Send a valid token in the Authorization: Bearer header.' });
  }
}

export class StorageUnavailableError extends RunledgerError {
  constructor(message: string, details: ErrorDetails, cause?: unknown) {
    super(ErrorCode.storageUnavailable, message, {
      details,
      cause,
      fix: 'Nothing was half-written; retry the same call with the same idempotency_key once storage is available.',
    });
  }
}

export class GenerationFailedError extends RunledgerError {
  constructor(message: string, details: ErrorDetails = {}, cause?: unknown) {
    super(ErrorCode.generationFailed, message, {
      details,
      cause,
      fix: 'This run has ended and was not billed. A new idempotency_key starts a new run.',
    });
  }
}

/**
 * runledger proxy: a call was forwarded to the upstream server, but its answer was never stored (the
 * proxy or the connection died first), so whether it took effect is unknown. It is not sent again.
 */
export class OutcomeUnknownError extends RunledgerError {
  constructor(tool: string, runId: string, startedAt: string) {
    super(
      ErrorCode.outcomeUnknown,
      `The ${tool} call with this idempotency_key (run ${runId}) was sent to the upstream server at ${startedAt}, ` +
        'but no answer was recorded: it may or may not have taken effect, so it was not sent again.',
      {
        details: { run_id: runId, tool, started_at: startedAt },
        fix:
          `Check with the upstream server whether the ${tool} call took effect (look the result up with its read-only tools). ` +
          'If it did not, call again with a NEW idempotency_key; this key keeps answering outcome_unknown.',
      },
    );
  }
}

/**
 * A job provider's job: the submit was sent (and perhaps answered) but the process died before the
 * job's handle was stored, and no job found within the search bound could be shown to be this run's.
 * It is not submitted again: that could pay for the same clip twice. The run ends unbilled.
 */
export class JobOutcomeUnknownError extends RunledgerError {
  constructor(opts: {
    provider: string;
    runId: string;
    tool: string;
    submittedAt: string;
    searchedMs: number;
    searchedBy: string[];
    candidates: string[];
  }) {
    const { provider, runId, tool, submittedAt, searchedMs, searchedBy, candidates } = opts;
    super(
      ErrorCode.outcomeUnknown,
      `The ${tool} job of run ${runId} was submitted to ${provider} at ${submittedAt}, but the server stopped before it stored the job's id, ` +
        `and ${Math.round(searchedMs / 1000)} s of looking (${searchedBy.join(', ')}) found no job that is surely this run's` +
        (candidates.length > 0 ? ` (${candidates.length} could be: ${candidates.join(', ')})` : '') +
        '. It may or may not exist upstream, so it was not submitted again.',
      {
        details: {
          run_id: runId,
          provider,
          submitted_at: submittedAt,
          searched_ms: searchedMs,
          searched_by: searchedBy,
          candidates,
        },
        fix:
          `Look in ${provider}'s dashboard for a job created around ${submittedAt}${candidates.length > 0 ? ` (perhaps ${candidates.join(' or ')})` : ''}: ` +
          'if one is there, its output is yours to fetch there. This run was not billed. To make it again, call with a NEW idempotency_key; ' +
          'this key keeps answering outcome_unknown.',
      },
    );
  }
}

/** runledger proxy: the first call with this key is still being answered upstream. */
export class CallInProgressError extends RunledgerError {
  constructor(tool: string, runId: string, waitedSeconds: number) {
    super(
      ErrorCode.callInProgress,
      `The first ${tool} call with this idempotency_key (run ${runId}) is still running upstream after ${waitedSeconds} s.`,
      {
        details: { run_id: runId, tool, waited_seconds: waitedSeconds },
        fix: 'Retry later with the SAME idempotency_key to get its answer; a new key would perform the action a second time.',
      },
    );
  }
}

/** runledger proxy: the upstream server could not be reached, so nothing was sent to it. */
export class UpstreamUnavailableError extends RunledgerError {
  constructor(
    message: string,
    cause?: unknown,
    fix = 'Nothing was sent and nothing was stored: retry with the same idempotency_key once the upstream server is back.',
  ) {
    super(ErrorCode.upstreamUnavailable, message, { cause, fix });
  }
}

export class InternalError extends RunledgerError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCode.internalError, message, {
      cause,
      fix: 'Retry with the same idempotency_key; if it persists, report it with the server log.',
    });
  }
}

/** Any thrown value as a RunledgerError, so no caller ever sees an untyped failure. */
export function asRunledgerError(err: unknown): RunledgerError {
  if (err instanceof RunledgerError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(`Unexpected failure: ${message}`, err);
}
