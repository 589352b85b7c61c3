// The MCP server factory: lists the tool entries, dispatches calls to them, and maps errors. The
// entries are built once per runtime (mcpTools); a server per session only binds them to its tenant.
// The low-level Server is used (not McpServer) so that validation failures come back as typed
// `validation_failed` results an agent can act on, rather than the SDK's generic message.
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode as RpcErrorCode,
  ListToolsRequestSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import { asRunledgerError, ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { RunService } from '../runs.js';
import type { GenerationTool } from '../tool.js';
import { cancelRunTool } from './cancel-run.js';
import { createTool } from './create-tool.js';
import { deleteRunTool } from './delete-run.js';
import { getUsageTool } from './get-usage.js';
import { listRunsTool } from './list-runs.js';
import { pollRunTool } from './poll-run.js';
import { registerRunResources } from './resources.js';
import { registerTaskHandlers, TASKS_CAPABILITY, taskRpcError } from './tasks.js';
import { errorResult, type Extra, type ToolEntry } from './tool.js';

export type { Extra } from './tool.js';

const INSTRUCTIONS =
  'Generation tools (create_*) answer at once with a run_id and render in the background. Give every ' +
  'logical request its own idempotency_key (a UUID) and send the SAME key when retrying: a retry returns ' +
  'the same run and is never billed twice. Follow a run with poll_run; do not create again to check on it.';

/** Every tool this server offers, in the order tools/list shows them: one create tool per catalogue entry, then the run tools. */
export function mcpTools(runs: RunService, tools: readonly GenerationTool[]): ToolEntry[] {
  return [
    ...tools.map((tool) => createTool(tool, runs)),
    pollRunTool(runs, tools),
    cancelRunTool(runs),
    listRunsTool(runs, tools),
    deleteRunTool(runs),
    getUsageTool(runs),
  ];
}

export interface ServerDeps {
  runs: RunService;
  tools: readonly ToolEntry[];
  /** The tenant a request acts for: fixed over stdio, from the bearer token over HTTP. */
  tenantOf: (extra: Extra) => string;
  version: string;
  log?: Logger;
}

export function createServer(deps: ServerDeps): { server: Server; close(): Promise<void> } {
  const log = deps.log ?? silentLogger;
  const server = new Server(
    { name: 'runledger', title: 'runledger — retry-safe generation', version: deps.version },
    { capabilities: { tools: {}, resources: {}, logging: {}, tasks: TASKS_CAPABILITY }, instructions: INSTRUCTIONS },
  );
  const definitions = deps.tools.map((entry) => entry.definition);
  const byName = new Map(deps.tools.map((entry) => [entry.definition.name, entry]));

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: definitions }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const entry = byName.get(request.params.name);
    if (entry === undefined) {
      throw new McpError(
        RpcErrorCode.InvalidParams,
        `Unknown tool ${request.params.name}; tools/list names the tools.`,
      );
    }
    const ctx = { tenant: deps.tenantOf(extra), extra };
    const asTask = request.params.task !== undefined;
    if (asTask && entry.startTask === undefined) {
      throw new McpError(
        RpcErrorCode.MethodNotFound,
        `${request.params.name} does not run as a task; call it without "task".`,
      );
    }
    try {
      return asTask
        ? await entry.startTask!(request.params.arguments, ctx)
        : await entry.handle(request.params.arguments, ctx);
    } catch (e) {
      const err = asRunledgerError(e);
      if (err.code === ErrorCode.internalError) {
        log.error('internal error', { tool: request.params.name, error: err.message, cause: String(err.cause) });
        throw new McpError(RpcErrorCode.InternalError, err.message);
      }
      // A task-augmented call must answer with a task, so its errors are JSON-RPC errors.
      if (asTask) throw taskRpcError(err);
      return errorResult(err);
    }
  });

  registerRunResources(server, deps.runs, deps.tenantOf);
  registerTaskHandlers(server, deps.runs, deps.tenantOf);
  return { server, close: () => server.close() };
}
