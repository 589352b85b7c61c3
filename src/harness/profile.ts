// Target profiles: the conventions by which a server says what the harness needs to know. Which
// argument carries the key, where an answer names its run, which tool follows a run and which one
// reads the bill, which words end a run. A profile comes from a JSON file, from flags, or from the
// built-in ones (runledger's own, and runledger proxy's `_meta` marks); what none of them says is
// detected from tools/list and from the answers themselves.
import { readFileSync } from 'node:fs';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { UsageError } from '../command-line.js';
import { isObject, type JsonObject } from './json.js';

const field = z
  .string()
  .min(1)
  .describe(
    'A field of an answer: a dot path into its JSON ("job.id"), or "_meta.NAME" for the entry NAME of the result\'s _meta, taken whole ("_meta.io.runledger/run_id")',
  );
const fields = z
  .union([field, z.array(field).min(1)])
  .describe('One field, or several tried in order (the first that holds a value wins)');
const words = z.array(z.string().min(1)).min(1);

export const ProfileSchema = z
  .strictObject({
    $schema: z.string().optional(),
    name: z.string().min(1).optional().describe('What the profile is for, shown in the report'),
    key_argument: z
      .string()
      .min(1)
      .optional()
      .describe(
        'The argument that carries the idempotency key (default: any argument named like one: idempotency_key, client_token, dedupe_key, ...)',
      ),
    run_id: fields
      .optional()
      .describe(
        'Where an answer names its run (default: _meta.io.runledger/run_id, run_id, job_id, task_id, operation_id, id, their camelCase forms, run.id, job.id, task.id, operation.id, then any other *_id)',
      ),
    replayed: fields
      .optional()
      .describe('Where an answer says it is a replay (default: _meta.io.runledger/replayed, replayed)'),
    status: fields
      .optional()
      .describe(
        "Where an answer gives its run's phase or status (default: phase, status, state, and the same under run, job, task or operation). Unless named here, a status is read as a run's only when it holds a word runs use",
      ),
    done_words: words
      .optional()
      .describe(
        'Status words for a run that ended well and is billed (default: done, completed, complete, succeeded, success, finished)',
      ),
    failed_words: words
      .optional()
      .describe(
        'Status words for a run that ended otherwise (default: failed, failure, error, errored, canceled, cancelled, expired, rejected, aborted)',
      ),
    error_code: fields.optional().describe('Where a refusal gives its error code (default: error.code, code, error)'),
    poll: z
      .strictObject({
        tool: z.string().min(1).describe('A read-only tool that answers for one run'),
        argument: z.string().min(1).describe('Its argument that takes the run id'),
        wait_argument: z
          .string()
          .min(1)
          .optional()
          .describe('Its argument, in seconds, that makes it wait for the run to end (its schema maximum is honoured)'),
      })
      .optional()
      .describe('How to follow a run to its end (default: detected from tools/list)'),
    usage: z
      .strictObject({
        tool: z.string().min(1).describe('A read-only tool, called without arguments, that counts runs and charges'),
        runs: field
          .optional()
          .describe('The field that counts runs created (default: detected from its answer: runs, jobs, tasks, ...)'),
        charges: field
          .optional()
          .describe('The field that counts charges (default: detected from its answer: charges, billed, ...)'),
        by_tool: field
          .optional()
          .describe('An object of {runs, charges} by tool name, to name the tool that double-bills'),
      })
      .optional()
      .describe('How to read the bill (default: detected from tools/list)'),
    run_resource: z
      .strictObject({
        template: z
          .string()
          .regex(/\{[^{}]+\}/, 'must hold one {variable} for the run id')
          .describe('A resource URI template with one variable, the run id ("runs://{run_id}")'),
        billed: field.optional().describe('The boolean field of the resource that says the run was billed'),
      })
      .optional()
      .describe('A resource that shows one run, to tell billed runs from unbilled ones'),
  })
  .describe('A runledger replay target profile: the conventions of one MCP server');

export type Profile = z.infer<typeof ProfileSchema>;

/** runledger's own conventions. */
export const RUNLEDGER_PROFILE: Profile = {
  name: 'runledger',
  key_argument: 'idempotency_key',
  run_id: 'run_id',
  replayed: 'replayed',
  status: 'phase',
  done_words: ['done'],
  failed_words: ['failed', 'canceled'],
  error_code: 'error.code',
  poll: { tool: 'poll_run', argument: 'run_id', wait_argument: 'wait_seconds' },
  usage: { tool: 'get_usage', runs: 'runs', charges: 'charges', by_tool: 'by_tool' },
  run_resource: { template: 'runs://{run_id}', billed: 'billed' },
};

/** runledger proxy's: its own run id and replay mark in each answer's _meta, whatever the upstream answers. */
export const PROXY_PROFILE: Profile = {
  name: 'proxy',
  key_argument: 'idempotency_key',
  run_id: '_meta.io.runledger/run_id',
  replayed: '_meta.io.runledger/replayed',
  error_code: 'error.code',
};

export const BUILT_IN_PROFILES: Readonly<Record<string, Profile>> = {
  runledger: RUNLEDGER_PROFILE,
  proxy: PROXY_PROFILE,
};

/** Which profile was asked for: detect it, a built-in one, or a file. */
export type ProfileChoice =
  | { kind: 'auto' }
  | { kind: 'built-in'; name: string; profile: Profile }
  | { kind: 'file'; file: string; profile: Profile };

export function loadProfile(text: string): ProfileChoice {
  if (text === 'auto') return { kind: 'auto' };
  const builtIn = BUILT_IN_PROFILES[text];
  if (builtIn !== undefined) return { kind: 'built-in', name: text, profile: builtIn };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(text, 'utf8'));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new UsageError(
      `--profile "${text}" is not auto, ${Object.keys(BUILT_IN_PROFILES).join(', ')} or a readable JSON file: ${why}`,
    );
  }
  return { kind: 'file', file: text, profile: parseProfile(raw, text) };
}

export function parseProfile(raw: unknown, where: string): Profile {
  const parsed = ProfileSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const path = issue.path.length === 0 ? '' : `"${issue.path.join('.')}" `;
  const message =
    issue.code === 'unrecognized_keys' ? `has no field ${issue.keys.map((k) => `"${k}"`).join(', ')}` : issue.message;
  throw new UsageError(
    `profile ${where}: ${path}${message} (runledger replay --profile-schema prints what a profile holds)`,
  );
}

/** A field of an answer, parsed: where to look, step by step. */
export interface FieldPath {
  text: string;
  meta: boolean;
  steps: string[];
}

export function parseField(text: string): FieldPath {
  // A _meta name is namespaced with dots and slashes ("io.runledger/run_id"): it is one step.
  if (text.startsWith('_meta.')) return { text, meta: true, steps: [text.slice('_meta.'.length)] };
  return { text, meta: false, steps: text.split('.') };
}

const fieldList = (value: string | string[]) => (typeof value === 'string' ? [value] : value).map(parseField);

export function readField(source: { data: JsonObject; meta: JsonObject }, path: FieldPath): unknown {
  let value: unknown = path.meta ? source.meta : source.data;
  for (const step of path.steps) {
    if (!isObject(value)) return undefined;
    value = value[step];
  }
  return value;
}

/** Where a convention came from, for the report. */
export type Found = 'profile' | 'flag' | 'detected' | 'default' | 'missing';

export interface PollConvention {
  tool: string;
  argument: string;
  /** The argument's JSON type: a numeric run id is sent as a number. */
  argumentType: string | undefined;
  waitArgument: string | undefined;
  /** The largest wait the tool's schema allows, when it says. */
  waitMax: number | undefined;
}

export interface UsageConvention {
  tool: string;
  runs: FieldPath | undefined;
  charges: FieldPath | undefined;
  byTool: FieldPath | undefined;
}

/** What the harness reads an answer with: the profile's fields, resolved. */
export interface AnswerConventions {
  runId: FieldPath[];
  /** The run id fields were named, so no other `*_id` field is taken for one. */
  runIdNamed: boolean;
  replayed: FieldPath[];
  status: FieldPath[];
  /** The status field was named, so any word in it is a run's status, not only the ones known. */
  statusNamed: boolean;
  done: ReadonlySet<string>;
  failed: ReadonlySet<string>;
  errorCode: FieldPath[];
}

export interface Conventions extends AnswerConventions {
  /** "auto", a built-in profile's name, or the profile file. */
  profile: string;
  /** The profile's own name, when it has one. */
  name: string | undefined;
  keyArgument: string | undefined;
  poll: PollConvention | undefined;
  usage: UsageConvention | undefined;
  runResource: { template: string; billed: FieldPath | undefined } | undefined;
  /** Where each convention came from, and a note when something was asked for and not found. */
  found: Record<ConventionName, { from: Found; note?: string }>;
}

export const CONVENTIONS = ['key_argument', 'run_id', 'status', 'poll', 'usage', 'run_resource'] as const;
export type ConventionName = (typeof CONVENTIONS)[number];

/** How a user supplies each convention: the flag, and the profile field. */
export const SUPPLIED_BY: Record<ConventionName | 'usage_fields', { flag: string; profile_field: string }> = {
  key_argument: { flag: '--key-argument NAME', profile_field: 'key_argument' },
  run_id: { flag: '--run-id-field FIELD', profile_field: 'run_id' },
  status: {
    flag: '--status-field FIELD (and --done-words, --failed-words)',
    profile_field: 'status, done_words, failed_words',
  },
  poll: { flag: '--poll-tool NAME --poll-argument NAME', profile_field: 'poll.tool, poll.argument' },
  usage: { flag: '--usage-tool NAME', profile_field: 'usage.tool' },
  usage_fields: { flag: '--usage-runs FIELD --usage-charges FIELD', profile_field: 'usage.runs, usage.charges' },
  run_resource: { flag: '--run-resource TEMPLATE', profile_field: 'run_resource.template' },
};

const CONTAINERS = ['run', 'job', 'task', 'operation'];
const DEFAULT_RUN_ID = [
  '_meta.io.runledger/run_id',
  'run_id',
  'runId',
  'job_id',
  'jobId',
  'task_id',
  'taskId',
  'operation_id',
  'operationId',
  'id',
  ...CONTAINERS.map((c) => `${c}.id`),
];
const DEFAULT_REPLAYED = ['_meta.io.runledger/replayed', 'replayed'];
const DEFAULT_STATUS = [
  'phase',
  'status',
  'state',
  ...CONTAINERS.flatMap((c) => ['phase', 'status', 'state'].map((f) => `${c}.${f}`)),
];
const DEFAULT_DONE = ['done', 'completed', 'complete', 'succeeded', 'success', 'finished'];
const DEFAULT_FAILED = [
  'failed',
  'failure',
  'error',
  'errored',
  'canceled',
  'cancelled',
  'expired',
  'rejected',
  'aborted',
];
/** Words that say a run is still going, so that a `status` field nobody named is read as a run's only when it holds a run's word. */
export const GOING_WORDS = new Set([
  'queued',
  'pending',
  'running',
  'in_progress',
  'in-progress',
  'processing',
  'started',
  'submitted',
  'working',
  'waiting',
  'scheduled',
  'accepted',
  'starting',
  'composing',
  'rendering',
  'generating',
]);
const DEFAULT_ERROR_CODE = ['error.code', 'code', 'error'];

/** What the harness saw of the server before replaying: its name, its tools, its resource templates. */
export interface Seen {
  serverName: string | undefined;
  tools: readonly Tool[];
  resourceTemplates: readonly string[];
}

/** The built-in profile a server's name gives away, when auto-detecting. */
function builtInFor(serverName: string | undefined): { name: string; profile: Profile } | undefined {
  if (serverName === 'runledger') return { name: 'runledger', profile: RUNLEDGER_PROFILE };
  if (serverName?.startsWith('runledger-proxy(') === true) return { name: 'proxy', profile: PROXY_PROFILE };
  return undefined;
}

const lower = (list: readonly string[]) => new Set(list.map((w) => w.toLowerCase()));
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
function detectPoll(tools: readonly Tool[]): { tool: Tool; argument: string } | { ambiguous: string[] } | undefined {
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

function detectUsage(tools: readonly Tool[]): Tool | { ambiguous: string[] } | undefined {
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

function pollConvention(
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

/**
 * The conventions a replay reads the server by: the profile asked for, then the flags over it, then
 * what tools/list shows for whatever neither says. A tool a profile names that the server does not
 * offer is noted, and left out.
 */
export function resolveConventions(choice: ProfileChoice, given: ProfileFlags, seen: Seen): Conventions {
  const auto = choice.kind === 'auto' ? builtInFor(seen.serverName) : undefined;
  const base: Profile = choice.kind === 'auto' ? (auto?.profile ?? {}) : choice.profile;
  const flags = flagsProfile(given, base);
  const profileLabel =
    choice.kind === 'auto'
      ? auto === undefined
        ? 'auto'
        : `auto: ${auto.name}`
      : choice.kind === 'built-in'
        ? choice.name
        : choice.file;
  const merged: Profile = { ...base };
  for (const [key, value] of Object.entries(flags))
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  const from = (key: keyof Profile): Found =>
    flags[key] !== undefined
      ? 'flag'
      : base[key] !== undefined
        ? auto !== undefined
          ? 'detected'
          : 'profile'
        : 'default';
  const found = {} as Conventions['found'];
  const tools = new Map(seen.tools.map((tool) => [tool.name, tool]));

  found.key_argument = { from: merged.key_argument === undefined ? 'default' : from('key_argument') };
  found.run_id = { from: merged.run_id === undefined ? 'default' : from('run_id') };
  found.status = {
    from:
      merged.status === undefined && merged.done_words === undefined
        ? 'default'
        : from(merged.status !== undefined ? 'status' : 'done_words'),
  };

  let poll: PollConvention | undefined;
  if (merged.poll !== undefined) {
    const tool = tools.get(merged.poll.tool);
    if (tool === undefined)
      found.poll = {
        from: 'missing',
        note: `the ${from('poll')} names poll tool ${merged.poll.tool}, which the server does not offer`,
      };
    else {
      poll = pollConvention(tool, merged.poll.tool, merged.poll.argument, merged.poll.wait_argument);
      found.poll = { from: from('poll') };
    }
  } else {
    const detected = detectPoll(seen.tools);
    if (detected === undefined)
      found.poll = { from: 'missing', note: 'no read-only tool that takes a run id looks like one that follows a run' };
    else if ('ambiguous' in detected)
      found.poll = {
        from: 'missing',
        note: `several tools could follow a run (${detected.ambiguous.join(', ')}): name one`,
      };
    else {
      poll = pollConvention(detected.tool, detected.tool.name, detected.argument, undefined);
      found.poll = { from: 'detected' };
    }
  }

  let usage: UsageConvention | undefined;
  if (merged.usage !== undefined) {
    const { tool, runs, charges, by_tool: byTool } = merged.usage;
    if (!tools.has(tool))
      found.usage = {
        from: 'missing',
        note: `the ${from('usage')} names usage tool ${tool}, which the server does not offer`,
      };
    else {
      usage = {
        tool,
        runs: runs === undefined ? undefined : parseField(runs),
        charges: charges === undefined ? undefined : parseField(charges),
        byTool: byTool === undefined ? undefined : parseField(byTool),
      };
      found.usage = { from: from('usage') };
    }
  } else {
    const detected = detectUsage(seen.tools);
    if (detected === undefined)
      found.usage = {
        from: 'missing',
        note: 'no read-only tool without required arguments is named for usage, billing or charges',
      };
    else if ('ambiguous' in detected)
      found.usage = {
        from: 'missing',
        note: `several tools could read the bill (${detected.ambiguous.join(', ')}): name one`,
      };
    else {
      usage = { tool: detected.name, runs: undefined, charges: undefined, byTool: undefined };
      found.usage = { from: 'detected' };
    }
  }

  let runResource: Conventions['runResource'];
  if (merged.run_resource !== undefined) {
    runResource = {
      template: merged.run_resource.template,
      billed: merged.run_resource.billed === undefined ? undefined : parseField(merged.run_resource.billed),
    };
    found.run_resource = { from: from('run_resource') };
  } else if (seen.resourceTemplates.includes(RUNLEDGER_PROFILE.run_resource!.template)) {
    runResource = { template: RUNLEDGER_PROFILE.run_resource!.template, billed: parseField('billed') };
    found.run_resource = { from: 'detected' };
  } else {
    found.run_resource = { from: 'missing' };
  }

  return {
    profile: profileLabel,
    name: merged.name,
    keyArgument: merged.key_argument,
    runId: fieldList(merged.run_id ?? DEFAULT_RUN_ID),
    runIdNamed: merged.run_id !== undefined,
    replayed: fieldList(merged.replayed ?? DEFAULT_REPLAYED),
    status: fieldList(merged.status ?? DEFAULT_STATUS),
    statusNamed: merged.status !== undefined,
    done: lower(merged.done_words ?? DEFAULT_DONE),
    failed: lower(merged.failed_words ?? DEFAULT_FAILED),
    errorCode: fieldList(merged.error_code ?? DEFAULT_ERROR_CODE),
    poll,
    usage,
    runResource,
    found,
  };
}

/** The conventions of a server nothing is known about: every default, no poll, no usage. */
export function defaultConventions(): Conventions {
  return resolveConventions({ kind: 'auto' }, {}, { serverName: undefined, tools: [], resourceTemplates: [] });
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

/** The flags that set one convention each, as a partial profile laid over the one asked for. */
export interface ProfileFlags {
  keyArgument?: string;
  runIdFields?: string[];
  statusField?: string;
  doneWords?: string[];
  failedWords?: string[];
  pollTool?: string;
  pollArgument?: string;
  pollWaitArgument?: string;
  usageTool?: string;
  usageRuns?: string;
  usageCharges?: string;
  runResource?: string;
}

/**
 * Flags as a profile. A poll or usage flag that names only part of its convention borrows the rest
 * from the profile asked for, when it has that convention.
 */
export function flagsProfile(flags: ProfileFlags, base: Profile): Profile {
  const out: Profile = {};
  if (flags.keyArgument !== undefined) out.key_argument = flags.keyArgument;
  if (flags.runIdFields !== undefined) out.run_id = flags.runIdFields;
  if (flags.statusField !== undefined) out.status = flags.statusField;
  if (flags.doneWords !== undefined) out.done_words = flags.doneWords;
  if (flags.failedWords !== undefined) out.failed_words = flags.failedWords;
  if (flags.pollTool !== undefined || flags.pollArgument !== undefined || flags.pollWaitArgument !== undefined) {
    const tool = flags.pollTool ?? base.poll?.tool;
    const argument = flags.pollArgument ?? base.poll?.argument;
    if (tool === undefined) throw new UsageError('--poll-argument and --poll-wait-argument go with --poll-tool NAME');
    if (argument === undefined)
      throw new UsageError('--poll-tool needs --poll-argument NAME, the argument that takes the run id');
    out.poll = {
      tool,
      argument,
      ...(flags.pollWaitArgument !== undefined
        ? { wait_argument: flags.pollWaitArgument }
        : base.poll?.wait_argument !== undefined
          ? { wait_argument: base.poll.wait_argument }
          : {}),
    };
  }
  if (flags.usageTool !== undefined || flags.usageRuns !== undefined || flags.usageCharges !== undefined) {
    const tool = flags.usageTool ?? base.usage?.tool;
    if (tool === undefined) throw new UsageError('--usage-runs and --usage-charges go with --usage-tool NAME');
    const runs = flags.usageRuns ?? base.usage?.runs;
    const charges = flags.usageCharges ?? base.usage?.charges;
    out.usage = {
      tool,
      ...(runs !== undefined ? { runs } : {}),
      ...(charges !== undefined ? { charges } : {}),
      ...(base.usage?.by_tool !== undefined ? { by_tool: base.usage.by_tool } : {}),
    };
  }
  if (flags.runResource !== undefined) {
    if (!/\{[^{}]+\}/.test(flags.runResource))
      throw new UsageError(
        `--run-resource must be a URI template with one {variable} for the run id, got "${flags.runResource}"`,
      );
    out.run_resource = { template: flags.runResource };
  }
  return out;
}
