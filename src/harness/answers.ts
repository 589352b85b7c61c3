// Tool definitions and tool answers read as plain JSON, through the target's conventions, so that the
// harness judges any MCP server by what it says. An answer, a refusal and a bill are all read the same
// way: the result's structuredContent, or else JSON in a text block, with its _meta beside it.
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { canonicalJson, isObject, type JsonObject } from './json.js';
import { GOING_WORDS, type AnswerConventions, type UsageConvention } from './conventions.js';
import { detectUsageFields } from './detection.js';
import { readField, type FieldPath } from './fields.js';

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
  type?: unknown;
  enum?: unknown[];
  maximum?: number;
  maxLength?: number;
}

/** Argument names that mean "idempotency key", compared without case, "_" or "-". */
const KEY_NAMES = new Set([
  'idempotencykey',
  'idempotencytoken',
  'clienttoken',
  'clientrequestid',
  'dedupkey',
  'dedupekey',
  'deduplicationkey',
  'deduplicationid',
  'requestkey',
]);
const normalName = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, '');
export const isKeyName = (name: string) => KEY_NAMES.has(normalName(name));

/**
 * Arguments that steer how one call is answered rather than what it asks for, so a retry may change
 * them without being a different request.
 */
export const STEERING_FIELDS = new Set(['wait_seconds', 'dry_run']);

/** The same request, asking to be answered without waiting for its run to finish. */
export function answerAtOnce(args: JsonObject): JsonObject {
  return typeof args.wait_seconds === 'number' && args.wait_seconds > 0 ? { ...args, wait_seconds: 0 } : args;
}

/** `keyArgument` is the profile's; without one, an argument named like a key is the key. */
export function toolInfo(tool: Tool, keyArgument: string | undefined): ToolInfo {
  const properties = (isObject(tool.inputSchema.properties) ? tool.inputSchema.properties : {}) as Record<
    string,
    JsonSchema
  >;
  const readOnly = tool.annotations?.readOnlyHint === true;
  const declared =
    keyArgument !== undefined
      ? keyArgument in properties
        ? keyArgument
        : null
      : (Object.keys(properties).find(isKeyName) ?? null);
  return {
    name: tool.name,
    // A read-only tool may look a run up by its key (poll_run does); that key creates nothing.
    keyField: readOnly ? null : declared,
    idempotentHint: tool.annotations?.idempotentHint,
    readOnlyHint: tool.annotations?.readOnlyHint,
    destructiveHint: tool.annotations?.destructiveHint,
    properties,
  };
}

/** The argument holding the idempotency key: the one the tool declares, else the profile's, else one named like a key. */
export function keyFieldOf(
  info: ToolInfo | undefined,
  args: JsonObject,
  keyArgument: string | undefined,
): string | null {
  const field =
    info?.keyField ??
    (keyArgument !== undefined
      ? keyArgument in args
        ? keyArgument
        : null
      : (Object.keys(args).find(isKeyName) ?? null));
  return field !== null && typeof args[field] === 'string' ? field : null;
}

export const isTerminalPhase = (phase: string | undefined, c: AnswerConventions) =>
  phase !== undefined && (c.done.has(phase.toLowerCase()) || c.failed.has(phase.toLowerCase()));
export const isFinishedPhase = (phase: string | undefined, c: AnswerConventions) =>
  phase !== undefined && c.done.has(phase.toLowerCase());

export interface Answer {
  /** The server refused the call: a JSON-RPC error, or an isError result that is not a run's own answer. */
  refused: boolean;
  /** The error code it gave, when it gave one (the profile's error_code, or the JSON-RPC code). */
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
export type ToolResult = Pick<CallToolResult, 'isError'> & {
  content?: unknown;
  structuredContent?: unknown;
  _meta?: unknown;
};

/** The answer's JSON: its structuredContent, or the first text block that holds a JSON object. */
export function dataOf(result: ToolResult): JsonObject | undefined {
  if (isObject(result.structuredContent)) return result.structuredContent;
  for (const block of Array.isArray(result.content) ? result.content : []) {
    if (!isObject(block) || block.type !== 'text' || typeof block.text !== 'string') continue;
    const text = block.text.trim();
    if (!text.startsWith('{')) continue;
    try {
      const parsed: unknown = JSON.parse(text);
      if (isObject(parsed)) return parsed;
    } catch {
      // Prose that happens to start with a brace: not this block.
    }
  }
  return undefined;
}

type Source = { data: JsonObject; meta: JsonObject };
const sourceOf = (result: ToolResult): Source => ({
  data: dataOf(result) ?? {},
  meta: isObject(result._meta) ? result._meta : {},
});

function firstOf<T>(
  source: Source,
  paths: readonly FieldPath[],
  accept: (value: unknown) => value is T,
): [FieldPath, T] | undefined {
  for (const path of paths) {
    const value = readField(source, path);
    if (accept(value)) return [path, value];
  }
  return undefined;
}
const isIdValue = (value: unknown): value is string | number =>
  (typeof value === 'string' && value !== '') || (typeof value === 'number' && Number.isFinite(value));
const isString = (value: unknown): value is string => typeof value === 'string';
const isBoolean = (value: unknown): value is boolean => typeof value === 'boolean';

/** Any other top-level `*_id`/`*Id`, or a `_meta` entry named for a run, job, task or operation id. */
function anyId(source: Source): [FieldPath, string | number] | undefined {
  const key = Object.keys(source.data).find((k) => /(_id|[a-z]Id)$/.test(k) && isIdValue(source.data[k]));
  if (key !== undefined) return [{ text: key, meta: false, steps: [key] }, source.data[key] as string | number];
  const metaKey = Object.keys(source.meta).find(
    (k) => /[/.](run|job|task|operation)_?id$/i.test(k) && isIdValue(source.meta[k]),
  );
  if (metaKey !== undefined)
    return [{ text: `_meta.${metaKey}`, meta: true, steps: [metaKey] }, source.meta[metaKey] as string | number];
  return undefined;
}

export function readAnswer(result: ToolResult, c: AnswerConventions): Answer {
  const source = sourceOf(result);
  const isError = result.isError === true;
  // An error may name another run (the one holding the key): only the profile's run id fields count there.
  const found = firstOf(source, c.runId, isIdValue) ?? (c.runIdNamed || isError ? undefined : anyId(source));
  // A `status` of "closed" on a ticket is the ticket's, not a run's: unless the profile names the
  // field, only a word that runs use is read as a run's status.
  const word = firstOf(source, c.status, isString)?.[1];
  const known = (w: string) =>
    c.done.has(w.toLowerCase()) || c.failed.has(w.toLowerCase()) || GOING_WORDS.has(w.toLowerCase());
  const status = word !== undefined && (c.statusNamed || known(word)) ? word : undefined;
  // An error result is a refusal unless it is a run's own answer: one marked in _meta (runledger proxy
  // replays an upstream's stored error that way), or one that names its run with the run's status (a
  // failed run). An error that names a run without a status is a refusal that points at the run.
  const runAnswer = found !== undefined && (!isError || found[0].meta || status !== undefined);
  const refused = isError && !runAnswer;
  const assets = Array.isArray(source.data.assets) ? source.data.assets.filter(isObject) : undefined;
  const hashes = assets?.map((a) => a.sha256 ?? a.hash).filter(isString);
  const stable = Object.fromEntries(
    Object.entries(source.data).filter(
      ([key]) => !c.replayed.some((p) => !p.meta && p.steps.length === 1 && p.steps[0] === key),
    ),
  );
  return {
    refused,
    errorCode: firstOf(source, c.errorCode, isString)?.[1],
    runId: runAnswer ? String(found[1]) : undefined,
    idField: runAnswer ? found[0].text : undefined,
    phase: status,
    replayed: firstOf(source, c.replayed, isBoolean)?.[1],
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

export interface Usage {
  /** Runs counted, when the answer counts them. */
  runs: number | undefined;
  charges: number;
  byTool: Record<string, { runs: number | undefined; charges: number }>;
  /** The fields the counts were read from. */
  fields: { runs: string | undefined; charges: string };
}

/** The server's bill, read through the profile's fields or ones named like counts; else why not. */
export function readUsage(result: ToolResult, conv: UsageConvention): Usage | { problem: string } {
  const source = sourceOf(result);
  if (result.isError === true) return { problem: `${conv.tool} answered with an error` };
  if (Object.keys(source.data).length === 0)
    return { problem: `${conv.tool} answered no JSON (neither structuredContent nor a JSON text block)` };
  const detected = detectUsageFields(source.data);
  const runsField = conv.runs ?? detected.runs;
  const chargesField = conv.charges ?? detected.charges;
  const count = (path: FieldPath | undefined) => {
    const value = path === undefined ? undefined : readField(source, path);
    return Number.isInteger(value) ? (value as number) : undefined;
  };
  const charges = count(chargesField);
  if (charges === undefined) {
    const why =
      chargesField === undefined
        ? 'no field of its answer is named like a count of charges'
        : `its answer has no whole number at ${chargesField.text}`;
    return { problem: `${conv.tool}: ${why}` };
  }
  const byTool: Usage['byTool'] = {};
  const perTool = conv.byTool === undefined ? undefined : readField(source, conv.byTool);
  for (const [tool, counts] of Object.entries(isObject(perTool) ? perTool : {})) {
    if (isObject(counts) && Number.isInteger(counts.charges))
      byTool[tool] = {
        runs: Number.isInteger(counts.runs) ? (counts.runs as number) : undefined,
        charges: counts.charges as number,
      };
  }
  const runs = count(runsField);
  return {
    runs,
    charges,
    byTool,
    fields: { runs: runs === undefined ? undefined : runsField!.text, charges: chargesField!.text },
  };
}
