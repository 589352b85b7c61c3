// The one table of runledger's commands and flags. parseArgs options, each command's --help, the
// environment variables and the defaults are all read from here, so a flag is described once. The
// flags are described by group in the *-flags.ts modules beside this one, and assembled here.
// Cheap imports only: --help and bad flags answer before anything heavy loads.
import { join } from 'node:path';
import type { Flag } from './flag.js';
import { CONVENTION_FLAGS, RECORD_FLAGS, REPLAY_FLAGS } from './harness-flags.js';
import { LEDGER_FLAGS, RUNS_LIST_FLAGS } from './ledger-flags.js';
import { IMAGE_PROVIDER_FLAGS, JOB_PROVIDER_FLAGS } from './provider-flags.js';
import { PROXY_FLAGS } from './proxy-flags.js';
import { HTTP_FLAGS, WORK_FLAGS } from './server-flags.js';

/** Where `runledger demo` writes its images, and its own ledger unless --db says otherwise. */
export const DEMO_OUT_DIR = 'runledger-out';
export const DEMO_DB = join(DEMO_OUT_DIR, 'demo.db');

export const FLAGS = {
  ...LEDGER_FLAGS,
  ...WORK_FLAGS,
  ...IMAGE_PROVIDER_FLAGS,
  ...JOB_PROVIDER_FLAGS,
  ...HTTP_FLAGS,
  ...PROXY_FLAGS,
  ...RUNS_LIST_FLAGS,
  ...RECORD_FLAGS,
  ...REPLAY_FLAGS,
  help: { type: 'boolean', short: 'h', help: 'this help' },
  version: { type: 'boolean', short: 'v', help: 'the version' },
} as const satisfies Record<string, Flag>;

export type FlagName = keyof typeof FLAGS;

/** The names of a group of flag definitions, in the order they are described. */
export const flagNames = <T extends Partial<Record<FlagName, Flag>>>(group: T) =>
  Object.keys(group) as (keyof T & FlagName)[];

interface Group {
  title: string;
  flags: readonly FlagName[];
}

export interface Command {
  /** What follows `runledger` on the command line. */
  words: readonly string[];
  /** One line, for the list of commands. */
  summary: string;
  /** Usage lines, each after `runledger `. */
  usage: readonly string[];
  /** Paragraphs under the usage. */
  about?: string;
  groups: readonly Group[];
  /** This command's own defaults, where they differ from the flag's. */
  defaults?: Partial<Record<FlagName, string>>;
  /** Paragraphs after the flags. */
  after?: string;
}

const LEDGER: Group = { title: 'The ledger', flags: ['db', 'db-schema', 'db-pool-size', 'tenant'] };
const HTTP: Group = {
  title: 'Streamable HTTP (instead of stdio)',
  flags: flagNames(HTTP_FLAGS),
};
const GENERAL: Group = { title: 'General', flags: ['log-level', 'help', 'version'] };

export const COMMANDS = {
  serve: {
    words: ['serve'],
    summary: 'serve MCP over stdio (what Claude Desktop, Cursor and VS Code launch), or Streamable HTTP with --http',
    usage: ['[serve] [options]'],
    about: 'With no command, runledger serves: "runledger" and "runledger serve" are the same.',
    groups: [
      LEDGER,
      { title: 'The work', flags: ['concurrency', 'phase-delay-ms', 'lease-ms'] },
      {
        title: 'Image providers (the built-in renderer is the default; see docs/providers.md)',
        flags: [
          'provider',
          'provider-for',
          'provider-url',
          'provider-model',
          'provider-key-env',
          'provider-timeout-ms',
          'provider-sizes',
        ],
      },
      {
        title: 'Job providers (queue APIs such as Replicate or fal, declared in files; see docs/providers.md)',
        flags: ['provider-file', 'public-url', 'orphan-search-ms', 'max-output-bytes'],
      },
      HTTP,
      GENERAL,
    ],
  },
  proxy: {
    words: ['proxy'],
    summary:
      "serve another MCP server's tools with every mutating one fenced by the ledger: a retry with the same idempotency_key never repeats it",
    usage: ['proxy [options] -- <server command...>', 'proxy [options] --upstream-url URL'],
    groups: [
      {
        title: 'The upstream',
        flags: [
          'upstream-url',
          'upstream-token',
          'upstream-timeout-ms',
          'upstream-max',
          'upstream-idle-ms',
          'upstream-per-session',
        ],
      },
      { title: 'The fence', flags: ['fence', 'pass', 'retry-errors', 'wait-seconds', 'lease-ms'] },
      LEDGER,
      HTTP,
      GENERAL,
    ],
  },
  demo: {
    words: ['demo'],
    summary: 'run the server as a child and show create, replay, refusal and billing',
    usage: ['demo [options]'],
    about:
      `The demo keeps its runs in a ledger of its own, ${DEMO_DB}, beside the images it saves in ${DEMO_OUT_DIR}/, ` +
      'so they never reach the ledger you serve from; --db (or RUNLEDGER_DB) chooses another.',
    groups: [LEDGER, { title: 'The work', flags: ['phase-delay-ms'] }, GENERAL],
    defaults: { db: DEMO_DB, 'phase-delay-ms': '400' },
  },
  'runs-list': {
    words: ['runs', 'list'],
    summary: 'list runs in the ledger, newest first, with their keys',
    usage: ['runs list [options]'],
    groups: [{ title: 'Which runs', flags: ['tool', 'phase', 'limit', 'cursor'] }, LEDGER, GENERAL],
  },
  'runs-show': {
    words: ['runs', 'show'],
    summary: 'show one run as JSON',
    usage: ['runs show <run_id> [options]'],
    groups: [LEDGER, GENERAL],
  },
  'providers-check': {
    words: ['providers', 'check'],
    summary: 'check a job provider definition and print what it understood, or name each wrong field',
    usage: ['providers check FILE      a definition (JSON), or a shipped one: replicate, fal'],
    about: 'Exit 0 with what the definition says; exit 2 naming each field that is wrong.',
    groups: [GENERAL],
  },
  'providers-schema': {
    words: ['providers', 'schema'],
    summary: 'print the JSON Schema job provider definitions are checked against',
    usage: ['providers schema'],
    groups: [GENERAL],
  },
  record: {
    words: ['record'],
    summary: 'sit between an MCP client and a stdio server, and write each tools/call to a transcript',
    usage: [
      'record --out FILE [--redact REGEX]... -- <server command...>',
      'record --schema          print the JSON Schema of a transcript line',
    ],
    about:
      'Point your MCP client at "runledger record --out session.jsonl -- <your server command>" instead of the server ' +
      'itself. Every byte passes through unchanged; stdout stays the protocol channel, and what record has to say goes ' +
      "to stderr. It exits with the server's exit code. The command goes first, before its flags.",
    groups: [{ title: 'Options', flags: ['out', 'redact', 'schema', 'help', 'version'] }],
    after: 'Then: runledger replay FILE (runledger replay --help).',
  },
  replay: {
    words: ['replay'],
    summary: 'replay a recorded session against an MCP server with faults, and check that retries are safe',
    usage: [
      'replay FILE [options]',
      'replay --report-schema   print the JSON Schema of the report (--report FILE)',
      'replay --profile-schema  print the JSON Schema of a target profile (--profile FILE)',
    ],
    about:
      'Each recorded call is sent again under a fault: duplicated, in a burst, timed out, cancelled, its answer lost, ' +
      'its arguments changed under the same key, its HTTP response stream broken, the server SIGKILLed between or ' +
      'inside calls. Then the invariants are judged: one run per key, the same answer, one charge per run, no ' +
      'acknowledged run lost, every run terminal within the bound, a changed-argument retry refused and creating ' +
      "nothing, no progress notification after its call's answer. Progress goes to stderr, the verdict table to stdout. " +
      'The command goes first, before its flags.\n\n' +
      'Exit codes: 0 nothing broke; 1 an invariant broke; 2 bad input; 3 the replay could not run (the server would ' +
      'not start, or died on its own); 4 with --require-all, nothing broke but something went unchecked.',
    groups: [
      { title: 'The server', flags: ['server', 'url', 'token'] },
      { title: 'Faults', flags: ['faults', 'seed', 'settle-ms', 'burst'] },
      {
        title: "The server's conventions (see docs/harness.md; anything not given is detected from tools/list)",
        flags: ['profile', ...flagNames(CONVENTION_FLAGS)],
      },
      { title: 'The verdict', flags: ['require-all', 'report', 'report-schema', 'profile-schema', 'help', 'version'] },
    ],
  },
} as const satisfies Record<string, Command>;

export type CommandName = keyof typeof COMMANDS;
export const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

type FlagsOf<C extends CommandName> = (typeof COMMANDS)[C]['groups'][number]['flags'][number];
type ValueOf<F extends FlagName> = (typeof FLAGS)[F] extends { multiple: true }
  ? string[]
  : (typeof FLAGS)[F]['type'] extends 'boolean'
    ? boolean
    : string;
/** A command's flags as parseArgs gives them: each absent, or a string, a boolean or a list by the table. */
export type Values<C extends CommandName> = { [F in FlagsOf<C>]?: ValueOf<F> };

export function flagsOf(command: CommandName): FlagName[] {
  return COMMANDS[command].groups.flatMap((group) => group.flags);
}

/** The commands that take `flag`, in table order. */
export function commandsTaking(flag: FlagName): CommandName[] {
  return COMMAND_NAMES.filter((command) => flagsOf(command).includes(flag));
}

/** The parseArgs options of these flags (their `default` stays here: it may come from the environment). */
export function parseArgsOptions(flags: readonly FlagName[]) {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const name of flags) {
    const flag: Flag = FLAGS[name];
    options[name] = {
      type: flag.type,
      ...(flag.short === undefined ? {} : { short: flag.short }),
      ...(flag.multiple ? { multiple: true } : {}),
    };
  }
  return options;
}

/** The default of `flag` as `command` applies it, as text, or undefined when it has none of its own. */
export function defaultOf(command: CommandName, name: FlagName, env: NodeJS.ProcessEnv): string | undefined {
  const own = (COMMANDS[command] as Command).defaults?.[name];
  if (own !== undefined) return own;
  const flag: Flag = FLAGS[name];
  if (flag.default === undefined) return undefined;
  return typeof flag.default === 'function' ? flag.default(env) : String(flag.default);
}
