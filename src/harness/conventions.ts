// The conventions a replay reads the server by, resolved from the profile asked for, the flags laid
// over it, and what the server gives away (detection.ts); each notes where it came from, for the
// report. What no one names falls back to the defaults below, which fit most servers.
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { detectPoll, detectUsage, pollConvention } from './detection.js';
import { parseField, type FieldPath } from './fields.js';
import {
  builtInFor,
  flagsProfile,
  RUNLEDGER_PROFILE,
  type Profile,
  type ProfileChoice,
  type ProfileFlags,
} from './profile.js';

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

const fieldList = (value: string | string[]) => (typeof value === 'string' ? [value] : value).map(parseField);
const lower = (list: readonly string[]) => new Set(list.map((w) => w.toLowerCase()));

/** What the harness saw of the server before replaying: its name, its tools, its resource templates. */
export interface Seen {
  serverName: string | undefined;
  tools: readonly Tool[];
  resourceTemplates: readonly string[];
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
