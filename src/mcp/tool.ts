// What an MCP tool is here: its definition (built once per runtime) and a handler that parses the
// arguments, asks the run service, and shapes the answer. Each run tool is one file built with defineTool.
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type {
  CallToolResult,
  CreateTaskResult,
  ServerNotification,
  ServerRequest,
  Tool,
  ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { RunledgerError } from '../errors.js';
import { assertNotTooDeep, parse } from './fields.js';

export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Who a call acts for, and the SDK's per-request context (progress token, abort signal). */
export interface Context {
  tenant: string;
  extra: Extra;
}

export interface ToolEntry {
  definition: Tool;
  handle(args: unknown, ctx: Context): Promise<CallToolResult>;
  /** A task-augmented call: starts the work and answers with the task at once (tools that may run as tasks). */
  startTask?(args: unknown, ctx: Context): Promise<CreateTaskResult>;
}

export interface ToolConfig<S extends z.ZodType, A> {
  title: string;
  description: string;
  input: S;
  /** JSON Schema of the structured answer; see outputSchemaOf. */
  output: Tool['outputSchema'];
  annotations: ToolAnnotations;
  /** Replaces the plain schema parse (the create tools cache theirs). */
  parse?: (raw: unknown) => A;
  /** The definition's _meta, e.g. the MCP Apps view that shows its results. */
  meta?: Tool['_meta'];
}

export function defineTool<S extends z.ZodType, A = z.output<S>>(
  name: string,
  config: ToolConfig<S, A>,
  handle: (args: A, ctx: Context) => Promise<CallToolResult>,
): ToolEntry {
  const parseArgs = config.parse ?? ((raw: unknown) => parse(config.input, raw) as A);
  return {
    definition: {
      name,
      title: config.title,
      description: config.description,
      inputSchema: jsonSchemaOf(config.input, 'input') as Tool['inputSchema'],
      outputSchema: config.output,
      annotations: { title: config.title, ...config.annotations },
      ...(config.meta === undefined ? {} : { _meta: config.meta }),
    },
    handle: (raw, ctx) => {
      assertNotTooDeep(raw);
      return handle(parseArgs(raw), ctx);
    },
  };
}

export const READ_ONLY: ToolAnnotations = { readOnlyHint: true, openWorldHint: false };

export function structured(value: object, text: string): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: value as Record<string, unknown> };
}

/** A recoverable error as the agent sees it: a text that names the fix, and the typed error. */
export function errorResult(err: RunledgerError): CallToolResult {
  return {
    content: [{ type: 'text', text: `${err.code}: ${asSentence(err.message)} ${err.fix}` }],
    structuredContent: { error: err.toJSON() },
    isError: true,
  };
}

/** A message that may end in a quoted value or a list still reads as a sentence before the fix. */
function asSentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** A zod schema as the JSON Schema (draft 7) that tools/list carries, without its $schema line. */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output' = 'output'): { [k: string]: unknown } {
  const json = z.toJSONSchema(schema, { io, target: 'draft-7' }) as { [k: string]: unknown };
  delete json.$schema;
  return json;
}

const errorSchema = z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()) });

/**
 * A tool's output schema as JSON Schema, loosened so that the same tool may instead answer with one
 * of `alternatives` or with `{error: {code, message, details}}`: clients validate errors too.
 */
export function outputSchemaOf(
  schema: z.ZodObject,
  alternatives: Record<string, z.ZodType> = {},
): { type: 'object'; [k: string]: unknown } {
  const json = jsonSchemaOf(schema) as { required?: string[]; properties?: object };
  const { required = [], ...rest } = json;
  const branches = { ...alternatives, error: errorSchema.nullable() };
  const extra = Object.fromEntries(Object.entries(branches).map(([name, alt]) => [name, jsonSchemaOf(alt)]));
  return {
    ...rest,
    type: 'object',
    properties: { ...(json.properties ?? {}), ...extra },
    anyOf: [{ required }, ...Object.keys(branches).map((name) => ({ required: [name] }))],
  };
}
