// The MCP server runledger proxy offers its client: the upstream's tools, with every mutating one
// fenced (it gains a required idempotency_key and the retry wording, and goes through the ledger),
// read-only ones passed through untouched; resources and prompts passed through; the upstream's
// list_changed notifications followed.
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  GetPromptRequestSchema,
  GetPromptResultSchema,
  ListPromptsRequestSchema,
  ListPromptsResultSchema,
  ListResourcesRequestSchema,
  ListResourcesResultSchema,
  ListResourceTemplatesRequestSchema,
  ListResourceTemplatesResultSchema,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
  ReadResourceResultSchema,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { ErrorCode, RunledgerError } from '../errors.js';
import { assertValidKey, KEY_MAX, KEY_MIN, type JsonObject } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { errorResult, type Extra } from '../mcp/tool.js';
import { META_KEY, META_RUN_ID, type Fence } from './fence.js';
import type { Upstream, UpstreamSession } from './upstream.js';

export const PROXY_RETRY_WORDING =
  'runledger fences this tool: give every logical request its own idempotency_key (a UUID), and when retrying ' +
  'after a timeout or an error send the SAME key with the same arguments — the retry gets the first call’s answer ' +
  'and the action is not repeated. A new key performs the action again.';

const KEY_SCHEMA = {
  type: 'string',
  minLength: KEY_MIN,
  maxLength: KEY_MAX,
  pattern: '^[\\x21-\\x7E]+$',
  description: `Idempotency key, ${KEY_MIN}–${KEY_MAX} printable ASCII characters: one new key (a UUID) per logical request, the SAME key on every retry of it.`,
};

/** Which upstream tools are fenced: all but the read-only ones, as --fence and --pass adjust. */
export interface FencePolicy {
  fence: ReadonlySet<string>;
  pass: ReadonlySet<string>;
}

export function isFenced(tool: Tool, policy: FencePolicy): boolean {
  if (policy.pass.has(tool.name)) return false;
  if (policy.fence.has(tool.name)) return true;
  return tool.annotations?.readOnlyHint !== true;
}

/** The upstream declares its own idempotency_key: it gets the key too, not only in _meta. */
function takesKey(tool: Tool): boolean {
  return Object.hasOwn(tool.inputSchema.properties ?? {}, 'idempotency_key');
}

/** A fenced tool as the client sees it: the key required, the retry wording in its description. */
export function fencedDefinition(tool: Tool): Tool {
  const schema = tool.inputSchema;
  const required = schema.required ?? [];
  return {
    ...tool,
    description: tool.description === undefined ? PROXY_RETRY_WORDING : `${tool.description} ${PROXY_RETRY_WORDING}`,
    inputSchema: {
      ...schema,
      properties: { ...schema.properties, idempotency_key: takesKey(tool) ? { ...KEY_SCHEMA, ...(schema.properties!.idempotency_key as object) } : KEY_SCHEMA },
      required: required.includes('idempotency_key') ? required : [...required, 'idempotency_key'],
    },
  };
}

export interface ProxyServerDeps {
  upstream: Upstream;
  /** What the upstream said of itself when the proxy first connected. */
  session: UpstreamSession;
  fence: Fence;
  policy: FencePolicy;
  tenantOf: (extra: Extra) => string;
  /** How long one upstream call may take (reset by its progress notifications). */
  upstreamTimeoutMs: number;
  version: string;
  log: Logger;
}

export function createProxyServer(deps: ProxyServerDeps): { server: Server; close(): Promise<void> } {
  const { upstream, fence, policy, session } = deps;
  const has = session.capabilities;
  const name = session.info?.name ?? 'upstream';
  const server = new Server(
    { name: `runledger-proxy(${name})`, version: deps.version },
    {
      capabilities: {
        tools: { listChanged: true },
        ...(has.resources === undefined ? {} : { resources: { listChanged: has.resources.listChanged } }),
        ...(has.prompts === undefined ? {} : { prompts: { listChanged: has.prompts.listChanged } }),
      },
      instructions: [session.instructions, PROXY_RETRY_WORDING].filter((text) => text !== undefined).join('\n\n'),
    },
  );

  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: (await upstream.listTools()).map((tool) => (isFenced(tool, policy) ? fencedDefinition(tool) : tool)),
  }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const { name: toolName, arguments: raw = {} } = request.params;
    const tool = await upstream.tool(toolName);
    const progressToken = request.params._meta?.progressToken;
    const options = {
      timeout: deps.upstreamTimeoutMs,
      resetTimeoutOnProgress: true,
      onprogress:
        progressToken === undefined
          ? undefined
          : (progress: { progress: number; total?: number; message?: string }) =>
              void extra.sendNotification({ method: 'notifications/progress', params: { ...progress, progressToken } }).catch(() => undefined),
    };
    try {
      if (tool === undefined || !isFenced(tool, policy)) {
        // Not fenced (or unknown: the upstream gives its own answer): exactly the client's request, no ledger.
        return (await upstream.request('tools/call', request.params, CallToolResultSchema, { ...options, signal: extra.signal })) as CallToolResult;
      }
      const { idempotency_key: key, ...args } = raw;
      assertValidKey(key);
      return await fence.call({
        tenant: deps.tenantOf(extra),
        tool: toolName,
        key,
        args: args as JsonObject,
        idempotent: tool.annotations?.idempotentHint === true,
        // The client's abort is not passed on: the call runs to its end so that a retry gets its answer.
        forward: (runId) =>
          upstream.call(
            {
              name: toolName,
              arguments: takesKey(tool) ? raw : args,
              _meta: { ...request.params._meta, [META_KEY]: key, [META_RUN_ID]: runId },
            },
            options,
          ),
      });
    } catch (err) {
      // The upstream's own JSON-RPC error goes back as it came; runledger's are typed tool results.
      if (!(err instanceof RunledgerError)) throw err;
      if (err.code === ErrorCode.internalError) deps.log.error('internal error', { tool: toolName, error: err.message });
      return errorResult(err);
    }
  });

  if (has.resources !== undefined) {
    server.setRequestHandler(ListResourcesRequestSchema, (r, extra) => upstream.request(r.method, r.params, ListResourcesResultSchema, { signal: extra.signal }));
    server.setRequestHandler(ListResourceTemplatesRequestSchema, (r, extra) =>
      upstream.request(r.method, r.params, ListResourceTemplatesResultSchema, { signal: extra.signal }),
    );
    server.setRequestHandler(ReadResourceRequestSchema, (r, extra) => upstream.request(r.method, r.params, ReadResourceResultSchema, { signal: extra.signal }));
  }
  if (has.prompts !== undefined) {
    server.setRequestHandler(ListPromptsRequestSchema, (r, extra) => upstream.request(r.method, r.params, ListPromptsResultSchema, { signal: extra.signal }));
    server.setRequestHandler(GetPromptRequestSchema, (r, extra) => upstream.request(r.method, r.params, GetPromptResultSchema, { signal: extra.signal }));
  }

  const stopFollowing = upstream.onListChanged((change) => {
    // Only what this session was told it may hear of; a closed session hears nothing.
    if (server.transport === undefined) return;
    if (change !== 'notifications/tools/list_changed' && !(change === 'notifications/resources/list_changed' ? has.resources : has.prompts)) return;
    void server.notification({ method: change }).catch(() => undefined);
  });
  return {
    server,
    close: async () => {
      stopFollowing();
      await server.close();
    },
  };
}
