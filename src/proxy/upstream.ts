// The upstream MCP server behind runledger proxy: one client session, over stdio (a command this
// process spawns) or Streamable HTTP. It connects lazily and again after the upstream goes away, keeps
// the tool list until the upstream says it changed, and sorts a failed call into "did nothing" and
// "may have acted", which is what the fence must know.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolResultSchema,
  ErrorCode as RpcErrorCode,
  McpError,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ToolListChangedNotificationSchema,
  type CallToolRequest,
  type CallToolResult,
  type Implementation,
  type ServerCapabilities,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import { UpstreamUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { VERSION } from '../version.js';
import type { Forwarded } from './fence.js';

export type UpstreamTarget = { command: string[] } | { url: string; token: string | undefined };

export type ListChange = 'notifications/tools/list_changed' | 'notifications/resources/list_changed' | 'notifications/prompts/list_changed';

export interface UpstreamSession {
  info: Implementation | undefined;
  capabilities: ServerCapabilities;
  instructions: string | undefined;
}

interface Connection extends UpstreamSession {
  client: Client;
}

export class Upstream {
  private connection: Promise<Connection> | null = null;
  private tools: Promise<Map<string, Tool>> | null = null;
  private readonly listeners = new Set<(change: ListChange) => void>();

  constructor(
    private readonly target: UpstreamTarget,
    private readonly log: Logger,
  ) {}

  /** The upstream as it is safe to print: its command, or its URL (the token is never part of it). */
  describe(): string {
    return 'command' in this.target ? this.target.command.join(' ') : this.target.url;
  }

  /** The live session, connecting first if there is none. Throws upstream_unavailable. */
  connect(): Promise<Connection> {
    return (this.connection ??= this.open().catch((err: unknown) => {
      this.connection = null;
      throw new UpstreamUnavailableError(`Could not reach the upstream MCP server (${this.describe()}): ${(err as Error).message}`, err);
    }));
  }

  /** Hears the upstream's list_changed notifications (and a reconnect, which may change the tools). */
  onListChanged(listener: (change: ListChange) => void): () => void {
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
      return { kind: 'not-done', error: err };
    }
    try {
      return { kind: 'answer', result: (await client.request({ method: 'tools/call', params }, CallToolResultSchema, options)) as CallToolResult };
    } catch (err) {
      return { kind: mayHaveActed(err) ? 'unknown' : 'not-done', error: err };
    }
  }

  /** A request passed through unchanged (resources, prompts, a tool that is not fenced). */
  async request<S extends z.ZodType<object>>(method: string, params: Record<string, unknown> | undefined, schema: S, options?: RequestOptions): Promise<z.output<S>> {
    const { client } = await this.connect();
    return client.request({ method, params } as never, schema, options);
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = null;
    if (connection !== null) await (await connection.catch(() => null))?.client.close();
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
      return tools;
    })().catch((err: unknown) => {
      this.tools = null;
      throw err;
    }));
  }

  private async open(): Promise<Connection> {
    const client = new Client({ name: 'runledger-proxy', version: VERSION }, { capabilities: {} });
    const changed = (change: ListChange) => {
      if (change === 'notifications/tools/list_changed') this.tools = null;
      for (const listener of this.listeners) listener(change);
    };
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => changed('notifications/tools/list_changed'));
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => changed('notifications/resources/list_changed'));
    client.setNotificationHandler(PromptListChangedNotificationSchema, () => changed('notifications/prompts/list_changed'));
    const transport =
      'command' in this.target
        ? new StdioClientTransport({
            command: this.target.command[0]!,
            args: this.target.command.slice(1),
            // The whole environment: the upstream needs its own API keys, as if launched directly.
            env: Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined)),
            stderr: 'inherit',
          })
        : new StreamableHTTPClientTransport(new URL(this.target.url), {
            requestInit: this.target.token === undefined ? undefined : { headers: { Authorization: `Bearer ${this.target.token}` } },
          });
    await client.connect(transport);
    const current = this.connection;
    client.onclose = () => {
      if (this.connection !== current) return;
      this.connection = null;
      this.tools = null;
      this.log.warn('the upstream MCP server went away; it is reconnected on the next call', { upstream: this.describe() });
    };
    return { client, info: client.getServerVersion(), capabilities: client.getServerCapabilities() ?? {}, instructions: client.getInstructions() };
  }
}

/**
 * Whether a failed call may have reached the upstream and acted: a lost connection or a timeout after
 * it was sent may have. A JSON-RPC error answer, or a call that could not be sent, did nothing.
 */
function mayHaveActed(err: unknown): boolean {
  if (err instanceof McpError) return err.code === RpcErrorCode.ConnectionClosed || err.code === RpcErrorCode.RequestTimeout;
  const text = `${(err as Error)?.message ?? ''} ${String((err as { cause?: unknown })?.cause ?? '')}`;
  return !/Not connected|ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test(text);
}
