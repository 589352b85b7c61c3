// One client session with the upstream MCP server behind runledger proxy, over stdio (a process this
// one spawns) or Streamable HTTP. It connects lazily and again after the upstream goes away, keeps the
// tool list until the upstream says it changed, passes on its notifications, and sorts a failed call
// into "refused", "never reached" and "may have acted", which is what the fence must know.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolResultSchema,
  ErrorCode as RpcErrorCode,
  LoggingMessageNotificationSchema,
  McpError,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ToolListChangedNotificationSchema,
  type CallToolRequest,
  type CallToolResult,
  type Implementation,
  type LoggingLevel,
  type LoggingMessageNotification,
  type ServerCapabilities,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import { UpstreamUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { VERSION } from '../version.js';
import type { Forwarded } from './fence.js';

export type UpstreamTarget = { command: string[] } | { url: string; token: string | undefined };

export type ListChange =
  'notifications/tools/list_changed' | 'notifications/resources/list_changed' | 'notifications/prompts/list_changed';

/** What the upstream tells its client besides answers, for the proxy's sessions to hear. */
export type UpstreamEvent =
  { kind: 'list_changed'; method: ListChange } | { kind: 'log'; params: LoggingMessageNotification['params'] };

export interface UpstreamSession {
  info: Implementation | undefined;
  capabilities: ServerCapabilities;
  instructions: string | undefined;
}

interface Connection extends UpstreamSession {
  client: Client;
}

/**
 * The upstream's own JSON-RPC error, passed on as it came: its code, message and data. (The SDK's
 * McpError puts "MCP error <code>: " before the message, and the client would put it there again.)
 */
export class UpstreamRpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'UpstreamRpcError';
  }

  static of(err: McpError): UpstreamRpcError {
    const prefix = `MCP error ${err.code}: `;
    return new UpstreamRpcError(
      err.code,
      err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message,
      err.data,
    );
  }
}

export class Upstream {
  private connection: Promise<Connection> | null = null;
  private tools: Promise<Map<string, Tool>> | null = null;
  private readonly listeners = new Set<(event: UpstreamEvent) => void>();
  /** The level a client asked for, set again on every new connection. */
  private logLevel: LoggingLevel | undefined;
  /** Handlers using this session now (counted by the pool): one with none may be closed when idle. */
  busy = 0;
  lastUsed = Date.now();

  /**
   * `env`: set for a stdio upstream on top of this process's environment (its tenant, say).
   * `onListed`: hears every tool list fetched.
   */
  constructor(
    private readonly target: UpstreamTarget,
    private readonly log: Logger,
    private readonly env: Record<string, string> = {},
    private readonly onListed?: (tools: Map<string, Tool>) => void,
  ) {}

  /** The upstream as it is safe to print: its command, or its URL (the token is never part of it). */
  describe(): string {
    return 'command' in this.target ? this.target.command.join(' ') : this.target.url;
  }

  /** The live session, connecting first if there is none. Throws upstream_unavailable. */
  connect(): Promise<Connection> {
    return (this.connection ??= this.open().catch((err: unknown) => {
      this.connection = null;
      throw new UpstreamUnavailableError(
        `Could not reach the upstream MCP server (${this.describe()}): ${describeFailure(err)}`,
        err,
      );
    }));
  }

  /** Hears the upstream's notifications (and a reconnect, which may change the tools). */
  on(listener: (event: UpstreamEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async listTools(): Promise<Tool[]> {
    return [...(await this.toolMap()).values()];
  }

  /** The tool by name; the list is fetched again once when the name is new to it. */
  async tool(name: string): Promise<Tool | undefined> {
    const known = (await this.toolMap()).get(name);
    if (known !== undefined) return known;
    this.tools = null;
    return (await this.toolMap()).get(name);
  }

  /** Forwards a tools/call and says what became of it. */
  async call(params: CallToolRequest['params'], options: RequestOptions): Promise<Forwarded> {
    let client: Client;
    try {
      client = (await this.connect()).client;
    } catch (err) {
      return { kind: 'unreachable', error: err as UpstreamUnavailableError };
    }
    try {
      return {
        kind: 'answer',
        result: (await client.request(
          { method: 'tools/call', params },
          CallToolResultSchema,
          options,
        )) as CallToolResult,
      };
    } catch (err) {
      return this.sortFailure(err);
    }
  }

  /**
   * A request passed through (resources, prompts, a tool that is not fenced, the log level): the
   * upstream's JSON-RPC error comes back as it came; a failure to reach it is upstream_unavailable.
   */
  async request<S extends z.ZodType<object>>(
    method: string,
    params: Record<string, unknown> | undefined,
    schema: S,
    options?: RequestOptions,
  ): Promise<z.output<S>> {
    const { client } = await this.connect();
    try {
      return await client.request({ method, params } as never, schema, options);
    } catch (err) {
      const sorted = this.sortFailure(err);
      if (sorted.kind === 'unknown')
        throw new UpstreamUnavailableError(
          `The upstream MCP server (${this.describe()}) did not answer ${method}: ${describeFailure(err)}`,
          err,
        );
      throw sorted.error;
    }
  }

  async setLoggingLevel(level: LoggingLevel): Promise<void> {
    this.logLevel = level;
    const { client } = await this.connect();
    await client.setLoggingLevel(level);
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = null;
    if (connection !== null) await (await connection.catch(() => null))?.client.close();
  }

  /**
   * A failed request: the upstream's own JSON-RPC error means it refused and did nothing; a request
   * that never reached it did nothing either (and the session is dropped, to be opened again); a lost
   * connection or a timeout after sending may have acted.
   */
  private sortFailure(err: unknown): Exclude<Forwarded, { kind: 'answer' }> {
    if (err instanceof McpError) {
      if (err.code === RpcErrorCode.ConnectionClosed || err.code === RpcErrorCode.RequestTimeout)
        return { kind: 'unknown', error: err };
      return { kind: 'refused', error: UpstreamRpcError.of(err) };
    }
    if (neverSent(err)) {
      // A refused connection or a lost session: the next request opens a new one.
      if (!(err instanceof StreamableHTTPError) || err.code === 404) void this.close();
      return {
        kind: 'unreachable',
        error: new UpstreamUnavailableError(
          `Could not reach the upstream MCP server (${this.describe()}): ${describeFailure(err)}`,
          err,
        ),
      };
    }
    return { kind: 'unknown', error: err };
  }

  private toolMap(): Promise<Map<string, Tool>> {
    return (this.tools ??= (async () => {
      const { client } = await this.connect();
      const tools = new Map<string, Tool>();
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor === undefined ? {} : { cursor });
        for (const tool of page.tools) tools.set(tool.name, tool);
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      this.onListed?.(tools);
      return tools;
    })().catch((err: unknown) => {
      this.tools = null;
      throw err;
    }));
  }

  private emit(event: UpstreamEvent): void {
    if (event.kind === 'list_changed' && event.method === 'notifications/tools/list_changed') this.tools = null;
    for (const listener of this.listeners) listener(event);
  }

  private async open(): Promise<Connection> {
    const client = new Client({ name: 'runledger-proxy', version: VERSION }, { capabilities: {} });
    const changed = (method: ListChange) => () => this.emit({ kind: 'list_changed', method });
    client.setNotificationHandler(ToolListChangedNotificationSchema, changed('notifications/tools/list_changed'));
    client.setNotificationHandler(
      ResourceListChangedNotificationSchema,
      changed('notifications/resources/list_changed'),
    );
    client.setNotificationHandler(PromptListChangedNotificationSchema, changed('notifications/prompts/list_changed'));
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) =>
      this.emit({ kind: 'log', params: notification.params }),
    );
    const transport =
      'command' in this.target
        ? new StdioClientTransport({
            command: this.target.command[0]!,
            args: this.target.command.slice(1),
            // The whole environment: the upstream needs its own API keys, as if launched directly.
            env: { ...definedEntries(process.env), ...this.env },
            stderr: 'inherit',
          })
        : new StreamableHTTPClientTransport(new URL(this.target.url), {
            requestInit:
              this.target.token === undefined
                ? undefined
                : { headers: { Authorization: `Bearer ${this.target.token}` } },
          });
    await client.connect(transport);
    if (this.logLevel !== undefined && client.getServerCapabilities()?.logging !== undefined)
      await client.setLoggingLevel(this.logLevel);
    const current = this.connection;
    client.onclose = () => {
      if (this.connection !== current) return;
      this.connection = null;
      this.tools = null;
      this.log.warn('the upstream MCP server went away; it is reconnected on the next call', {
        upstream: this.describe(),
      });
    };
    return {
      client,
      info: client.getServerVersion(),
      capabilities: client.getServerCapabilities() ?? {},
      instructions: client.getInstructions(),
    };
  }
}

function definedEntries(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** Socket errors that mean no byte of the request reached the upstream. */
const UNREACHED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Every error in a failure's cause chain (fetch's TypeError wraps the socket's, sometimes an AggregateError). */
function causes(err: unknown): unknown[] {
  const seen: unknown[] = [];
  const queue = [err];
  while (queue.length > 0 && seen.length < 16) {
    const next = queue.shift();
    if (next === undefined || next === null || seen.includes(next)) continue;
    seen.push(next);
    if (next instanceof AggregateError) queue.push(...next.errors);
    if (typeof next === 'object' && 'cause' in next) queue.push(next.cause);
  }
  return seen;
}

/**
 * Whether a failed request certainly never reached the upstream: the connection was refused or the
 * host unknown, the client had no connection, or the upstream answered the HTTP request itself with
 * 404 (its session is gone: the message was not handled) or with a status that refuses it unread.
 */
function neverSent(err: unknown): boolean {
  if (err instanceof StreamableHTTPError)
    return err.code === 404 || err.code === 401 || err.code === 403 || err.code === 429 || err.code === 503;
  return causes(err).some(
    (e) =>
      (typeof e === 'object' && e !== null && UNREACHED.has(String((e as { code?: unknown }).code))) ||
      (e instanceof Error && /^Not connected$/.test(e.message)),
  );
}

/** A failure in a few words, with the socket error that caused it. */
function describeFailure(err: unknown): string {
  const chain = causes(err);
  const code = chain.map((e) => (e as { code?: unknown })?.code).find((c) => typeof c === 'string');
  const message = err instanceof Error ? err.message : String(err);
  return code === undefined || message.includes(code as string) ? message : `${message} (${code as string})`;
}
