// MCP tasks (protocol revision 2025-11-25) are runs by another name: task id = run id, status from
// the phase, and the ledger is the task store. A task is bound to its tenant, never to a session, so it
// is found after a restart, from another session and from every replica on the same ledger. The SDK's
// experimental task API mints its own ids and waits on its store by polling; these handlers speak the
// protocol over the run service instead, all in this file, so a later revision is a change here.
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CancelTaskRequestSchema,
  ErrorCode as RpcErrorCode,
  GetTaskPayloadRequestSchema,
  GetTaskRequestSchema,
  ListTasksRequestSchema,
  McpError,
  type CallToolResult,
  type CreateTaskResult,
  type ServerCapabilities,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { asRunledgerError, ErrorCode, type RunledgerError } from '../errors.js';
import { DEFAULT_RETENTION_MS, isTerminal, Phase, type Run } from '../ledger/index.js';
import type { RunService } from '../runs.js';
import type { Extra } from './tool.js';
import { runResult, runText, runView } from './views.js';

/** What a server that runs its create tools as tasks declares. */
export const TASKS_CAPABILITY: NonNullable<ServerCapabilities['tasks']> = {
  list: {},
  cancel: {},
  requests: { tools: { call: {} } },
};

/** Every message about a task carries its id here (the protocol's related-task metadata). */
export const RELATED_TASK = 'io.modelcontextprotocol/related-task';
/** What a host may hand its model at once, while the task runs (the protocol's provisional key). */
const IMMEDIATE_RESPONSE = 'io.modelcontextprotocol/model-immediate-response';

/** How often a client should look again, while a run is live. */
const POLL_INTERVAL_MS = 1000;
const PAGE_SIZE = 50;

/** A run as the task the protocol describes. */
export function taskOf(run: Run): Task {
  const last = run.phases.at(-1)?.at ?? run.createdAt;
  return {
    taskId: run.id,
    status: taskStatus(run.phase),
    statusMessage: statusMessage(run),
    createdAt: run.createdAt,
    lastUpdatedAt: last,
    // A run's key and result are kept for the retention window from its creation.
    ttl: DEFAULT_RETENTION_MS,
    ...(isTerminal(run.phase) ? {} : { pollInterval: POLL_INTERVAL_MS }),
  };
}

function taskStatus(phase: Phase): Task['status'] {
  switch (phase) {
    case Phase.done:
      return 'completed';
    case Phase.failed:
      return 'failed';
    case Phase.canceled:
      return 'cancelled';
    default:
      return 'working';
  }
}

function statusMessage(run: Run): string {
  switch (run.phase) {
    case Phase.done:
      return `Done: billed ${run.cost} credits once. tasks/result gives the images.`;
    case Phase.failed:
      return `Failed, not billed: ${run.error?.message ?? 'no reason was recorded'}`;
    case Phase.canceled:
      return 'Canceled before it finished; not billed.';
    default:
      return `${run.phase}, ${Math.round(run.progress * 100)}% done.`;
  }
}

/** A task-augmented create's answer: the run as a task, and a line a host may give its model at once. */
export function createTaskResult(run: Run, replayed: boolean): CreateTaskResult {
  return { task: taskOf(run), _meta: { [IMMEDIATE_RESPONSE]: runText(runView(run, replayed)) } };
}

/**
 * runledger's error where the protocol wants a JSON-RPC error (a task-augmented call, the tasks/*
 * methods): invalid params for what the caller can fix, internal error for the rest. The typed code
 * travels in its data, the fix in its message.
 */
export function taskRpcError(err: RunledgerError): McpError {
  const code =
    err.code === ErrorCode.internalError || err.code === ErrorCode.storageUnavailable
      ? RpcErrorCode.InternalError
      : RpcErrorCode.InvalidParams;
  return new McpError(code, `${err.code}: ${err.message} ${err.fix}`, { code: err.code, details: err.details });
}

/** A run of the tenant's, as a task lookup sees it: one it cannot see is not found. */
async function runOf(runs: RunService, tenant: string, taskId: string): Promise<Run> {
  try {
    return await runs.get(tenant, taskId);
  } catch (e) {
    const err = asRunledgerError(e);
    if (err.code === ErrorCode.notFound)
      throw new McpError(
        RpcErrorCode.InvalidParams,
        `Failed to retrieve task: task ${taskId} was not found (tasks/list shows this tenant's tasks).`,
      );
    throw taskRpcError(err);
  }
}

/** How long one wait inside tasks/result lasts before it looks again; the request itself has no bound. */
const RESULT_WAIT_SECONDS = 3600;

export function registerTaskHandlers(server: Server, runs: RunService, tenantOf: (extra: Extra) => string): void {
  server.setRequestHandler(GetTaskRequestSchema, async (request, extra) =>
    taskOf(await runOf(runs, tenantOf(extra), request.params.taskId)),
  );

  server.setRequestHandler(GetTaskPayloadRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const tenant = tenantOf(extra);
    let run = await runOf(runs, tenant, request.params.taskId);
    // Woken by the ledger's change feed as the run moves; blocks until it ends, as the protocol says.
    while (!isTerminal(run.phase)) {
      if (extra.signal.aborted)
        throw new McpError(RpcErrorCode.RequestTimeout, 'tasks/result was cancelled before the task ended.');
      run = (await runs.follow(tenant, run, { waitSeconds: RESULT_WAIT_SECONDS, signal: extra.signal })).run;
    }
    // Exactly what the create call answers once the run has ended, with the task's id.
    const answer = await runResult(
      run,
      false,
      run.phase === Phase.done ? () => runs.asset(tenant, run.id, 0) : undefined,
    );
    return { ...answer, _meta: { ...answer._meta, [RELATED_TASK]: { taskId: run.id } } };
  });

  server.setRequestHandler(ListTasksRequestSchema, async (request, extra) => {
    try {
      const page = await runs.list(tenantOf(extra), { limit: PAGE_SIZE, cursor: request.params?.cursor });
      return { tasks: page.runs.map(taskOf), ...(page.nextCursor === null ? {} : { nextCursor: page.nextCursor }) };
    } catch (e) {
      throw taskRpcError(asRunledgerError(e));
    }
  });

  server.setRequestHandler(CancelTaskRequestSchema, async (request, extra) => {
    const tenant = tenantOf(extra);
    await runOf(runs, tenant, request.params.taskId);
    const { run, outcome } = await runs
      .cancel(tenant, request.params.taskId)
      .catch((e: unknown) => Promise.reject(taskRpcError(asRunledgerError(e))));
    if (outcome !== 'canceled') {
      throw new McpError(
        RpcErrorCode.InvalidParams,
        `Task ${run.id} has already ended (${taskStatus(run.phase)}); a task that has ended cannot be cancelled.`,
      );
    }
    return taskOf(run);
  });
}
