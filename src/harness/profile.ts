// Target profiles: the conventions by which a server says what the harness needs to know. Which
// argument carries the key, where an answer names its run, which tool follows a run and which one
// reads the bill, which words end a run. A profile comes from a JSON file, from flags, or from the
// built-in ones (runledger's own, and runledger proxy's `_meta` marks); what none of them says is
// detected (detection.ts), and conventions.ts resolves them all into what a replay reads by.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { UsageError } from '../command-line.js';

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

/** The built-in profile a server's name gives away, when auto-detecting. */
export function builtInFor(serverName: string | undefined): { name: string; profile: Profile } | undefined {
  if (serverName === 'runledger') return { name: 'runledger', profile: RUNLEDGER_PROFILE };
  if (serverName?.startsWith('runledger-proxy(') === true) return { name: 'proxy', profile: PROXY_PROFILE };
  return undefined;
}

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
