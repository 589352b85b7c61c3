// What a server gives away when no profile or flag says: which tool follows a run and which one reads
// the bill, seen in tools/list, and which fields of the bill count runs and charges, seen in its
// answer. Ambiguity is reported, not guessed.
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { PollConvention } from './conventions.js';
import { parseField, type FieldPath } from './fields.js';
import { isObject, type JsonObject } from './json.js';

const isReadOnly = (tool: Tool) => tool.annotations?.readOnlyHint === true;
const propertiesOf = (tool: Tool): JsonObject =>
  isObject(tool.inputSchema.properties) ? tool.inputSchema.properties : {};

/** An argument that takes a run's id: run_id, job_id, id, jobId, ... */
const ID_ARGUMENT = /^(?:(?:run|job|task|operation|prediction|generation|request)_?id|id|[a-z]+Id|[a-z]+_id)$/;
const RUN_WORDS = /run|job|task|operation|prediction|generation|status|poll/i;
const NOT_A_POLL = /cancel|delete|remove|retry|create|submit|start|stop|update|set_/i;
const USAGE_WORDS = /usage|billing|bill|charge|invoice|cost|quota|meter|spend/i;
const WAIT_ARGUMENT = /^(wait|wait_seconds|waitSeconds|wait_s|block_seconds|timeout_seconds)$/;

function idArgument(tool: Tool): string | undefined {
  const names = Object.keys(propertiesOf(tool)).filter((name) => ID_ARGUMENT.test(name));
  const required = tool.inputSchema.required ?? [];
  return names.find((name) => required.includes(name)) ?? names[0];
}

/**
 * A poll tool by its look: read-only (or named get_, poll_, check_ ...), taking a run id, and named
 * for runs (run, job, task, status ...) or for what its id argument names (get_render(render_id)).
 * Ambiguity is reported, not guessed.
 */
export function detectPoll(
  tools: readonly Tool[],
): { tool: Tool; argument: string } | { ambiguous: string[] } | undefined {
  const stem = (argument: string) => argument.replace(/_?id$/i, '').toLowerCase();
  const candidates = tools
    .filter(
      (tool) =>
        !NOT_A_POLL.test(tool.name) &&
        (isReadOnly(tool) || /^(get|poll|check|fetch|describe|show|wait)/i.test(tool.name)),
    )
    .map((tool) => ({ tool, argument: idArgument(tool) }))
    .filter((c): c is { tool: Tool; argument: string } => c.argument !== undefined)
    .filter(
      (c) =>
        RUN_WORDS.test(c.tool.name) ||
        (stem(c.argument) !== '' && c.tool.name.toLowerCase().includes(stem(c.argument))),
    );
  const score = (c: { tool: Tool }) =>
    (c.tool.name === 'poll_run' ? 3 : /poll|status/i.test(c.tool.name) ? 2 : 1) + (isReadOnly(c.tool) ? 0.5 : 0);
  const best = Math.max(...candidates.map(score));
  const top = candidates.filter((c) => score(c) === best);
  if (top.length > 1) return { ambiguous: top.map((c) => c.tool.name) };
  return top[0];
}

export function detectUsage(tools: readonly Tool[]): Tool | { ambiguous: string[] } | undefined {
  const candidates = tools.filter(
    (tool) =>
      USAGE_WORDS.test(tool.name) &&
      (isReadOnly(tool) || /^(get|show|fetch|read)/i.test(tool.name)) &&
      (tool.inputSchema.required ?? []).length === 0,
  );
  const exact = candidates.find((tool) => tool.name === 'get_usage');
  if (exact !== undefined || candidates.length <= 1) return exact ?? candidates[0];
  return { ambiguous: candidates.map((tool) => tool.name) };
}

/** How to poll with this tool: its run id argument's type, and the argument that makes it wait (named, or
 * found by its name and numeric type) with the most its schema allows. */
export function pollConvention(
  tool: Tool | undefined,
  name: string,
  argument: string,
  waitArgument: string | undefined,
): PollConvention {
  const properties = tool === undefined ? {} : propertiesOf(tool);
  const schemaOf = (prop: string | undefined) =>
    prop !== undefined && isObject(properties[prop]) ? (properties[prop] as JsonObject) : {};
  const wait =
    waitArgument ??
    Object.keys(properties).find(
      (prop) => WAIT_ARGUMENT.test(prop) && ['integer', 'number'].includes(String(schemaOf(prop).type)),
    );
  const max = schemaOf(wait).maximum;
  const type = schemaOf(argument).type;
  return {
    tool: name,
    argument,
    argumentType: typeof type === 'string' ? type : undefined,
    waitArgument: wait,
    waitMax: typeof max === 'number' ? max : undefined,
  };
}

/** The counts of a usage answer: the fields named, else ones named like counts of runs and charges. */
const RUNS_FIELD =
  /^(?:runs|jobs|tasks|operations|calls|requests|creates)(?:_(?:created|total|count|made))?$|^(?:total|created)_(?:runs|jobs|tasks|operations|calls)$|^(?:run|job|task)_count$/i;
const CHARGES_FIELD =
  /^(?:charges|charged|billed|billable|invoiced|charge_count|billed_(?:runs|jobs|tasks|calls|count)|charges_(?:total|count))$/i;

export function detectUsageFields(data: JsonObject): { runs: FieldPath | undefined; charges: FieldPath | undefined } {
  const counts = Object.keys(data).filter((key) => Number.isInteger(data[key]));
  const runs = counts.find((key) => RUNS_FIELD.test(key));
  const charges = counts.find((key) => CHARGES_FIELD.test(key));
  return {
    runs: runs === undefined ? undefined : parseField(runs),
    charges: charges === undefined ? undefined : parseField(charges),
  };
}
