// Tool definitions and tool answers read as plain JSON, so that the harness judges any MCP server by
// what it says, not by runledger's own types.
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { canonicalJson } from '../ledger/fingerprint.js';
import { isObject, type JsonObject } from './transcript.js';

export interface ToolInfo {
  name: string;
  /** The argument that carries the idempotency key, when the tool declares one. */
  keyField: string | null;
  idempotentHint: boolean | undefined;
  readOnlyHint: boolean | undefined;
  destructiveHint: boolean | undefined;
  properties: Record<string, JsonSchema>;
}

/** The parts of an argument's JSON Schema that say which other value would still be valid. */
export interface JsonSchema {
  enum?: unknown[];
  maximum?: number;
  maxLength?: number;
}

/** Argument names that mean "idempotency key", compared without case, "_" or "-". */
const KEY_NAMES = new Set(['idempotencykey', 'idempotencytoken', 'clienttoken', 'dedupkey', 'dedupekey', 'deduplicationkey', 'deduplicationid']);
const normalName = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, '');
export const isKeyName = (name: string) => KEY_NAMES.has(normalName(name));

/**
 * Arguments that steer how one call is answered rather than what it asks for, so a retry may change
 * them without being a different request (runledger leaves the same ones out of its fingerprint).
 */
export const STEERING_FIELDS = new Set(['wait_seconds', 'dry_run']);

/** The same request, asking to be answered without waiting for its run to finish. */
export function answerAtOnce(args: JsonObject): JsonObject {
  return typeof args.wait_seconds === 'number' && args.wait_seconds > 0 ? { ...args, wait_seconds: 0 } : args;
}

export function toolInfo(tool: Tool): ToolInfo {
  const properties = (isObject(tool.inputSchema.properties) ? tool.inputSchema.properties : {}) as Record<string, JsonSchema>;
  const readOnly = tool.annotations?.readOnlyHint === true;
  return {
    name: tool.name,
    // A read-only tool may look a run up by its key (poll_run does); that key creates nothing.
    keyField: readOnly ? null : (Object.keys(properties).find(isKeyName) ?? null),
    idempotentHint: tool.annotations?.idempotentHint,
    readOnlyHint: tool.annotations?.readOnlyHint,
    destructiveHint: tool.annotations?.destructiveHint,
    properties,
  };
}

/** Phase or status words that mean a run has ended, and those that mean it ended well. */
const TERMINAL = new Set(['done', 'completed', 'complete', 'succeeded', 'success', 'failed', 'failure', 'error', 'canceled', 'cancelled', 'expired']);
const FINISHED = new Set(['done', 'completed', 'complete', 'succeeded', 'success']);
export const isTerminalPhase = (phase: string | undefined) => phase !== undefined && TERMINAL.has(phase.toLowerCase());
export const isFinishedPhase = (phase: string | undefined) => phase !== undefined && FINISHED.has(phase.toLowerCase());

/** Where a run id is looked for, first match wins; then any other top-level `*_id` or `*Id`. */
const ID_FIELDS = ['run_id', 'runId', 'job_id', 'jobId', 'task_id', 'taskId', 'operation_id', 'operationId', 'id'];

export interface Answer {
  /** The server refused the call: a JSON-RPC error, or an isError result that names no run. */
  refused: boolean;
  /** The error code it gave, when it gave one (runledger's `error.code`, or the JSON-RPC code). */
  errorCode: string | undefined;
  runId: string | undefined;
  /** The field the run id came from. */
  idField: string | undefined;
  phase: string | undefined;
  replayed: boolean | undefined;
  /** SHA-256 of each asset, in order, when the answer lists assets with hashes. */
  assetHashes: string[] | undefined;
  /** The answer without what may differ between two replays of one request, for tools without ids. */
  digest: string;
}

/** A CallToolResult as it came over the wire or out of a transcript: nothing in it is trusted. */
export type ToolResult = Pick<CallToolResult, 'isError'> & { content?: unknown; structuredContent?: unknown };

/** The answer's JSON: its structuredContent, or a lone text block that holds a JSON object. */
function dataOf(result: ToolResult): JsonObject | undefined {
  if (isObject(result.structuredContent)) return result.structuredContent;
  const blocks = Array.isArray(result.content) ? result.content : [];
  const [first] = blocks;
  if (blocks.length !== 1 || !isObject(first) || first.type !== 'text' || typeof first.text !== 'string') return undefined;
  try {
    const parsed: unknown = JSON.parse(first.text);
    return isObject(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function findId(data: JsonObject): [string, string] | undefined {
  const named = ID_FIELDS.find((field) => typeof data[field] === 'string' || typeof data[field] === 'number');
  const field = named ?? Object.keys(data).find((k) => /(_id|[a-z]Id)$/.test(k) && (typeof data[k] === 'string' || typeof data[k] === 'number'));
  return field === undefined ? undefined : [field, String(data[field])];
}

export function readAnswer(result: ToolResult): Answer {
  const data = dataOf(result) ?? {};
  const found = findId(data);
  const refused = result.isError === true && found === undefined;
  const error = isObject(data.error) ? data.error : undefined;
  const status = [data.phase, data.status, data.state].find((v) => typeof v === 'string') as string | undefined;
  const assets = Array.isArray(data.assets) ? data.assets.filter(isObject) : undefined;
  const hashes = assets?.map((a) => a.sha256 ?? a.hash).filter((h): h is string => typeof h === 'string');
  const { replayed, ...stable } = data;
  return {
    refused,
    errorCode: typeof error?.code === 'string' ? error.code : undefined,
    runId: refused ? undefined : found?.[1],
    idField: refused ? undefined : found?.[0],
    phase: status,
    replayed: typeof replayed === 'boolean' ? replayed : undefined,
    assetHashes: hashes !== undefined && hashes.length > 0 ? hashes : undefined,
    digest: canonicalJson(Object.keys(stable).length > 0 ? stable : (result.content ?? [])),
  };
}

/** A JSON-RPC error answer: always a refusal, never a run. */
export function rpcErrorAnswer(code: number): Answer {
  return {
    refused: true,
    errorCode: String(code),
    runId: undefined,
    idField: undefined,
    phase: undefined,
    replayed: undefined,
    assetHashes: undefined,
    digest: `rpc-error:${code}`,
  };
}
