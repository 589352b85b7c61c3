// The MCP server runledger proxy offers its client: the upstream's tools, with every mutating one
// fenced (it gains a required idempotency_key and the retry wording, and goes through the ledger),
// read-only ones passed through untouched; resources, prompts and logging passed through; the
// upstream's list_changed and log notifications followed. Each session talks to its tenant's own
// upstream session (or its own, per downstream session), never to another tenant's.
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { randomUUID } from 'node:crypto';
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
  ErrorCode as RpcErrorCode,
  SetLevelRequestSchema,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import { ErrorCode, RunledgerError } from '../errors.js';
import { assertValidKey, KEY_MAX, KEY_MIN, type JsonObject } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { errorResult } from '../mcp/tool.js';
import { META_KEY, META_RUN_ID, type Fence } from './fence.js';
import { UpstreamRpcError, type Upstream, type UpstreamSession } from './upstream.js';
import type { UpstreamPool } from './upstreams.js';

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

/**
 * Whether the proxy offers the tool. One that must run as an MCP task is not offered (yet): the
 * proxy does not take task-augmented calls, and a plain call to it would spend a key on an error.
 */
export function isOffered(tool: Tool): boolean {
  return tool.execution?.taskSupport !== 'required';
}

/** A tool as the proxy lists it: fenced or passed through, never as a task (the proxy declares no tasks). */
export function offeredDefinition(tool: Tool, policy: FencePolicy): Tool {
  const listed = { ...(isFenced(tool, policy) ? fencedDefinition(tool) : tool) };
  delete listed.execution;
  return listed;
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

/** runledger's typed error, as a branch of a widened output schema. */
const ERROR_BRANCH = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object' } },
      required: ['code', 'message', 'details'],
    },
  },
  required: ['error'],
};

type OutputSchema = NonNullable<Tool['outputSchema']>;

/** Definitions a schema's references point to, which must stay at the root when it is nested. */
const ROOT_ONLY = ['$schema', '$id', '$defs', 'definitions'] as const;

/**
 * The upstream's output schema widened to admit `{error: {code, message, details}}` as well (clients
 * validate the structured content of errors too), or undefined when it cannot be nested safely: a
 * reference into the schema's own body (`#/properties/...`) would point elsewhere once it is.
 */
export function admittingErrors(schema: OutputSchema): OutputSchema | undefined {
  const refs = [...JSON.stringify(schema).matchAll(/"\$ref":"(#[^"]*)"/g)].map((m) => m[1]!);
  if (refs.some((ref) => !/^#\/(\$defs|definitions)\//.test(ref))) return undefined;
  const root: Record<string, unknown> = {};
  const body: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(schema))
    ((ROOT_ONLY as readonly string[]).includes(name) ? root : body)[name] = value;
  const wide: OutputSchema = { ...root, type: 'object', anyOf: [body, ERROR_BRANCH] };
  admitsErrors.add(wide);
  return wide;
}

/** Output schemas made by admittingErrors. */
const admitsErrors = new WeakSet<object>();

const widened = new WeakMap<Tool, Tool>();

/**
 * A fenced tool as the client sees it: the key required, the retry wording in its description, and
 * its output schema widened for runledger's errors (kept as it is when it cannot be widened).
 */
export function fencedDefinition(tool: Tool): Tool {
  const known = widened.get(tool);
  if (known !== undefined) return known;
  const schema = tool.inputSchema;
  const required = schema.required ?? [];
  const outputSchema =
    tool.outputSchema === undefined ? undefined : (admittingErrors(tool.outputSchema) ?? tool.outputSchema);
  const definition: Tool = {
    ...tool,
    description: tool.description === undefined ? PROXY_RETRY_WORDING : `${tool.description} ${PROXY_RETRY_WORDING}`,
    inputSchema: {
      ...schema,
      properties: {
        ...schema.properties,
        idempotency_key: takesKey(tool)
          ? { ...KEY_SCHEMA, ...(schema.properties!.idempotency_key as object) }
          : KEY_SCHEMA,
      },
      required: required.includes('idempotency_key') ? required : [...required, 'idempotency_key'],
    },
    ...(outputSchema === undefined ? {} : { outputSchema }),
  };
  widened.set(tool, definition);
  return definition;
}

/**
 * runledger's error as the tool's answer. Its structured form goes in `structuredContent` where the
 * schema the client holds for this tool admits it (no output schema, or a widened one); otherwise only
 * in the text and in `_meta`, so a client that validates still accepts the answer.
 */
export function proxyErrorResult(err: RunledgerError, advertised: Tool | undefined): CallToolResult {
  const result = errorResult(err);
  const admitted =
    advertised !== undefined && (advertised.outputSchema === undefined || admitsErrors.has(advertised.outputSchema));
  if (admitted) return result;
  const { structuredContent: error, ...rest } = result;
  return { ...rest, _meta: { [META_ERROR]: (error as { error: unknown }).error } };
}

/** Where an error goes in `_meta` when the tool's output schema could not take it. */
export const META_ERROR = 'io.runledger/error';

export interface ProxyServerDeps {
  upstreams: UpstreamPool;
  /** What the upstream said of itself when the proxy first connected. */
  session: UpstreamSession;
  /** The tenant this downstream session acts for. */
  tenant: string;
  /** The session gets an upstream session of its own, closed with it, instead of its tenant's. */
  perSession: boolean;
  fence: Fence;
  policy: FencePolicy;
  /** How long one upstream call may take (reset by its progress notifications). */
  upstreamTimeoutMs: number;
  version: string;
  log: Logger;
}

/** A runledger error where only a JSON-RPC error can go (resources, prompts, tools/list, the log level). */
function asRpcError(err: unknown): unknown {
  if (!(err instanceof RunledgerError)) return err;
  return new UpstreamRpcError(RpcErrorCode.InternalError, `${err.code}: ${err.message} ${err.fix}`, { code: err.code });
}

export function createProxyServer(deps: ProxyServerDeps): { server: Server; close(): Promise<void> } {
  const { fence, policy, session, tenant } = deps;
  const has = session.capabilities;
  const name = session.info?.name ?? 'upstream';
  const scope = deps.perSession ? `${tenant}/${randomUUID()}` : tenant;
  const use = <T>(work: (upstream: Upstream) => Promise<T>) => deps.upstreams.use(scope, tenant, work);
  const passed = <T>(work: (upstream: Upstream) => Promise<T>) =>
    use(work).catch((err: unknown) => Promise.reject(asRpcError(err)));
  const server = new Server(
    { name: `runledger-proxy(${name})`, version: deps.version },
    {
      capabilities: {
        tools: { listChanged: true },
        ...(has.resources === undefined ? {} : { resources: { listChanged: has.resources.listChanged } }),
        ...(has.prompts === undefined ? {} : { prompts: { listChanged: has.prompts.listChanged } }),
        ...(has.logging === undefined ? {} : { logging: {} }),
      },
      instructions: [session.instructions, PROXY_RETRY_WORDING].filter((text) => text !== undefined).join('\n\n'),
    },
  );

  server.setRequestHandler(ListToolsRequestSchema, () =>
    passed(async (upstream) => ({
      tools: (await upstream.listTools()).filter(isOffered).map((tool) => offeredDefinition(tool, policy)),
    })),
  );

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const { name: toolName, arguments: raw = {} } = request.params;
    let tool: Tool | undefined;
    try {
      return await use(async (upstream) => {
        tool = await upstream.tool(toolName);
        if (tool !== undefined && !isOffered(tool)) {
          throw new UpstreamRpcError(
            RpcErrorCode.MethodNotFound,
            `${toolName} is not offered through runledger proxy: the upstream runs it only as an MCP task, which the proxy does not fence yet. Nothing was sent.`,
          );
        }
        const progressToken = request.params._meta?.progressToken;
        const options = {
          timeout: deps.upstreamTimeoutMs,
          resetTimeoutOnProgress: true,
          onprogress:
            progressToken === undefined
              ? undefined
              : (progress: { progress: number; total?: number; message?: string }) =>
                  void extra
                    .sendNotification({ method: 'notifications/progress', params: { ...progress, progressToken } })
                    .catch(() => undefined),
        };
        if (tool === undefined || !isFenced(tool, policy)) {
          // Not fenced (or unknown: the upstream gives its own answer): exactly the client's request, no ledger.
          return (await upstream.request('tools/call', request.params, CallToolResultSchema, {
            ...options,
            signal: extra.signal,
          })) as CallToolResult;
        }
        const fenced = tool;
        const { idempotency_key: key, ...args } = raw;
        assertValidKey(key);
        return await fence.call({
          tenant,
          tool: toolName,
          key,
          args: args as JsonObject,
          idempotent: fenced.annotations?.idempotentHint === true,
          // The client's abort is not passed on: the call runs to its end so that a retry gets its answer.
          forward: (runId) =>
            upstream.call(
              {
                name: toolName,
                arguments: takesKey(fenced) ? raw : args,
                _meta: { ...request.params._meta, [META_KEY]: key, [META_RUN_ID]: runId },
              },
              options,
            ),
        });
      });
    } catch (err) {
      // The upstream's own JSON-RPC error goes back as it came; runledger's are typed tool results.
      if (!(err instanceof RunledgerError)) throw err;
      if (err.code === ErrorCode.internalError)
        deps.log.error('internal error', { tool: toolName, error: err.message });
      const known = tool ?? deps.upstreams.lastKnownTool(toolName);
      return proxyErrorResult(err, known === undefined ? undefined : offeredDefinition(known, policy));
    }
  });

  const through =
    <S extends z.ZodType<object>>(schema: S) =>
    (request: { method: string; params?: Record<string, unknown> }, extra: { signal: AbortSignal }) =>
      passed((upstream) => upstream.request(request.method, request.params, schema, { signal: extra.signal }));
  if (has.resources !== undefined) {
    server.setRequestHandler(ListResourcesRequestSchema, through(ListResourcesResultSchema));
    server.setRequestHandler(ListResourceTemplatesRequestSchema, through(ListResourceTemplatesResultSchema));
    server.setRequestHandler(ReadResourceRequestSchema, through(ReadResourceResultSchema));
  }
  if (has.prompts !== undefined) {
    server.setRequestHandler(ListPromptsRequestSchema, through(ListPromptsResultSchema));
    server.setRequestHandler(GetPromptRequestSchema, through(GetPromptResultSchema));
  }
  if (has.logging !== undefined) {
    // The level is the upstream session's: over HTTP, every session of a tenant shares it (per tenant).
    server.setRequestHandler(SetLevelRequestSchema, (request) =>
      passed(async (upstream) => (await upstream.setLoggingLevel(request.params.level), {})),
    );
  }

  const stopFollowing = deps.upstreams.on(scope, (event) => {
    // Only what this session was told it may hear of; a closed session hears nothing.
    if (server.transport === undefined) return;
    if (event.kind === 'log') {
      if (has.logging !== undefined)
        void server.notification({ method: 'notifications/message', params: event.params }).catch(() => undefined);
      return;
    }
    const change = event.method;
    if (
      change !== 'notifications/tools/list_changed' &&
      !(change === 'notifications/resources/list_changed' ? has.resources : has.prompts)
    )
      return;
    void server.notification({ method: change }).catch(() => undefined);
  });
  let closed = false;
  const ended = async () => {
    if (closed) return;
    closed = true;
    stopFollowing();
    if (deps.perSession) await deps.upstreams.release(scope);
  };
  // However the session ends (the client leaves, the HTTP session is deleted or expires), it lets go.
  server.onclose = () => void ended();
  return {
    server,
    close: async () => {
      await server.close();
      await ended();
    },
  };
}
