// The one table of runledger's commands and flags. parseArgs options, each command's --help, the
// environment variables and the defaults are all read from here, so a flag is described once.
// Cheap imports only: --help and bad flags answer before anything heavy loads.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONCURRENCY, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_ORPHAN_SEARCH_MS } from './engine/defaults.js';
import { DEFAULT_LEASE_MS, DEFAULT_POOL_SIZE, MAX_PAGE_SIZE, PHASES } from './ledger/index.js';
import { MAX_SEED } from './prng.js';

export interface Flag {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: true;
  /** What the value is, as help shows it: `--db PATH|URL`. */
  arg?: string;
  /** What the flag does; help adds the range, the environment variable and the default after it. */
  help: string;
  /** Read when the flag is not given. */
  env?: string;
  /** Whole numbers: the bounds, checked and shown. */
  range?: readonly [number, number];
  /** Used when neither the flag nor its environment variable is given, and shown in help. */
  default?: string | number | ((env: NodeJS.ProcessEnv) => string);
  /** Shown in help when the default is not a value of its own (decided elsewhere, random, ...). */
  shown?: string;
}

/** Where the ledger lives unless told otherwise: the platform's per-user data directory. */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  const home = homedir();
  let base: string;
  if (platform === 'win32') base = env.LOCALAPPDATA ?? join(home, 'AppData', 'Local');
  else if (platform === 'darwin') base = join(home, 'Library', 'Application Support');
  else base = env.XDG_DATA_HOME || join(home, '.local', 'share');
  return join(base, 'runledger', 'ledger.db');
}

/** Where `runledger demo` writes its images, and its own ledger unless --db says otherwise. */
export const DEMO_OUT_DIR = 'runledger-out';
export const DEMO_DB = join(DEMO_OUT_DIR, 'demo.db');

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export const PROVIDERS = ['builtin', 'openai'] as const;

export const FLAGS = {
  // The ledger
  db: {
    type: 'string',
    arg: 'PATH|URL',
    help: 'the ledger: a SQLite file, or postgres://user:password@host:port/database for a ledger several replicas share',
    env: 'RUNLEDGER_DB',
    default: (env) => defaultDbPath(env),
  },
  'db-schema': {
    type: 'string',
    arg: 'NAME',
    help: 'PostgreSQL: the schema for the tables, unless the URL names one with ?schema=',
    env: 'RUNLEDGER_DB_SCHEMA',
    shown: 'runledger',
  },
  'db-pool-size': {
    type: 'string',
    arg: 'N',
    help: 'PostgreSQL: most connections this process opens for runs',
    env: 'RUNLEDGER_DB_POOL_SIZE',
    range: [1, 100],
    default: DEFAULT_POOL_SIZE,
  },
  tenant: {
    type: 'string',
    arg: 'NAME',
    help: 'the tenant whose runs this process serves',
    env: 'RUNLEDGER_TENANT',
    default: 'local',
  },
  'log-level': {
    type: 'string',
    arg: 'LEVEL',
    help: `${LOG_LEVELS.slice(0, -1).join(', ')} or ${LOG_LEVELS.at(-1)}; logs go to stderr, since stdout is the stdio protocol channel`,
    default: 'info',
  },

  // The work
  concurrency: {
    type: 'string',
    arg: 'N',
    help: 'runs rendered at once; 0 serves only, leaving rendering to another runledger process on the same ledger',
    range: [0, 32],
    default: DEFAULT_CONCURRENCY,
  },
  'phase-delay-ms': {
    type: 'string',
    arg: 'MS',
    help: 'slow every phase by MS, to watch the phase stream',
    range: [0, 600_000],
    default: 0,
  },
  'lease-ms': {
    type: 'string',
    arg: 'MS',
    help: "worker lease; a dead worker's run is resumed after it",
    range: [1000, 3_600_000],
    default: DEFAULT_LEASE_MS,
  },

  // Image providers
  provider: {
    type: 'string',
    arg: 'NAME',
    help: `${PROVIDERS.join(' or ')} (or a job provider a --provider-file defines), for every tool`,
    env: 'RUNLEDGER_PROVIDER',
    default: 'builtin',
  },
  'provider-for': {
    type: 'string',
    multiple: true,
    arg: 'TOOL=NAME',
    help: "this tool's provider, overriding --provider (repeatable), e.g. product_shot=openai",
  },
  'provider-url': {
    type: 'string',
    arg: 'URL',
    help: 'OpenAI-compatible API base',
    env: 'RUNLEDGER_PROVIDER_URL',
    default: 'https://api.openai.com/v1',
  },
  'provider-model': {
    type: 'string',
    arg: 'NAME',
    help: 'image model',
    env: 'RUNLEDGER_PROVIDER_MODEL',
    default: 'gpt-image-1',
  },
  'provider-key-env': {
    type: 'string',
    arg: 'VAR',
    help: 'the environment variable holding the API key; the key itself never passes through flags',
    default: 'OPENAI_API_KEY',
  },
  'provider-timeout-ms': {
    type: 'string',
    arg: 'MS',
    help: 'cut-off for one provider call',
    range: [1000, 600_000],
    default: 120_000,
  },
  'provider-sizes': {
    type: 'string',
    arg: 'LIST',
    help: 'sizes the model accepts, e.g. 1024x1024,1536x1024, or "any" to send the tool\'s exact size',
    default: '1024x1024,1536x1024,1024x1536',
  },

  // Job providers
  'provider-file': {
    type: 'string',
    multiple: true,
    arg: 'FILE',
    help: 'a job provider definition (JSON), or the name of a shipped one: replicate, fal (repeatable); its name then goes in --provider or --provider-for, e.g. --provider-file replicate --provider-for product_video=replicate',
  },
  'public-url': {
    type: 'string',
    arg: 'URL',
    help: 'the public base URL of this server (--http), where providers send webhooks (URL/webhooks/<name>); without it jobs are polled, which always works',
    env: 'RUNLEDGER_PUBLIC_URL',
  },
  'orphan-search-ms': {
    type: 'string',
    arg: 'MS',
    help: "how long a run whose submit's answer a crash lost looks for its job (webhooks, the list endpoint) before ending outcome_unknown, never submitting again",
    range: [1000, 86_400_000],
    default: DEFAULT_ORPHAN_SEARCH_MS,
  },
  'max-output-bytes': {
    type: 'string',
    arg: 'N',
    help: 'the largest output (image or video) fetched from a job provider and stored',
    range: [1024, 1024 * 1024 * 1024],
    default: DEFAULT_MAX_OUTPUT_BYTES,
  },

  // Streamable HTTP
  http: {
    type: 'boolean',
    help: 'serve MCP over Streamable HTTP at /mcp (and GET /healthz, /viewer) instead of stdio',
  },
  host: {
    type: 'string',
    arg: 'HOST',
    help: 'address to bind; another than loopback needs tokens',
    default: '127.0.0.1',
  },
  port: { type: 'string', arg: 'PORT', help: 'port; 0 picks a free one', range: [0, 65535], default: 8787 },
  stateless: { type: 'boolean', help: 'no sessions: every request stands alone (for load-balanced replicas)' },
  tokens: {
    type: 'string',
    arg: 'FILE',
    help: 'bearer tokens, one "TENANT TOKEN" pair a line, # comments (or RUNLEDGER_TOKENS=TENANT:TOKEN,TENANT:TOKEN in the environment)',
  },
  'max-body-bytes': {
    type: 'string',
    arg: 'N',
    help: 'largest request body',
    range: [1024, 64 * 1024 * 1024],
    default: 1024 * 1024,
  },
  'body-timeout-ms': {
    type: 'string',
    arg: 'MS',
    help: "a request's headers, then its body, must each arrive within MS, or it is answered 408 and its connection closed",
    range: [1000, 600_000],
    default: 20_000,
  },
  'max-connections': {
    type: 'string',
    arg: 'N',
    help: 'open connections; past it a request is answered 503 with Retry-After',
    range: [1, 1_000_000],
    default: 10_000,
  },
  'max-sessions': {
    type: 'string',
    arg: 'N',
    help: 'sessions this process holds, all tenants together; past it initialize is answered 503 with Retry-After',
    range: [1, 1_000_000],
    default: 5000,
  },
  'max-tenant-sessions': {
    type: 'string',
    arg: 'N',
    help: 'sessions one tenant holds; past it initialize is answered 429 with Retry-After',
    range: [1, 1_000_000],
    default: 1000,
  },
  'session-idle-ms': {
    type: 'string',
    arg: 'MS',
    help: 'a session with no request or stream open for MS is closed',
    range: [1000, 86_400_000],
    default: 30 * 60_000,
  },
  'allowed-hosts': {
    type: 'string',
    arg: 'LIST',
    help: 'more Host header values to accept, comma-separated (e.g. mcp.example.com)',
  },
  'allowed-origins': { type: 'string', arg: 'LIST', help: 'more Origin values to accept, comma-separated' },

  // runledger proxy
  'upstream-url': {
    type: 'string',
    arg: 'URL',
    help: 'the upstream as a Streamable HTTP server, instead of a command after --',
  },
  'upstream-token': {
    type: 'string',
    arg: 'TOKEN',
    help: 'bearer token for --upstream-url',
    env: 'RUNLEDGER_UPSTREAM_TOKEN',
  },
  'upstream-timeout-ms': {
    type: 'string',
    arg: 'MS',
    help: 'longest silence of one upstream call',
    range: [1000, 3_600_000],
    default: 600_000,
  },
  'upstream-max': {
    type: 'string',
    arg: 'N',
    help:
      'most upstream sessions open at once, one per tenant: a stdio upstream is one process per tenant, started ' +
      'with RUNLEDGER_TENANT set and {tenant} in its command or URL filled in',
    range: [1, 1000],
    default: 16,
  },
  'upstream-idle-ms': {
    type: 'string',
    arg: 'MS',
    help: "over --http, close a tenant's upstream session after MS unused",
    range: [1000, 86_400_000],
    default: 600_000,
  },
  'upstream-per-session': {
    type: 'boolean',
    help: 'one upstream session per client session instead of per tenant (not with --stateless)',
  },
  fence: { type: 'string', arg: 'LIST', help: 'also fence these tools, though annotated read-only (comma-separated)' },
  pass: {
    type: 'string',
    arg: 'LIST',
    help: 'pass these tools through unfenced, though they are not read-only (comma-separated)',
  },
  'retry-errors': {
    type: 'boolean',
    help: 'let a key be tried again after an isError answer, instead of replaying it',
  },
  'wait-seconds': {
    type: 'string',
    arg: 'N',
    help: 'how long a retry waits for the first call, still in flight, before answering call_in_progress',
    range: [0, 300],
    default: 25,
  },

  // runledger runs list
  tool: {
    type: 'string',
    arg: 'NAME',
    help: "only runs of this tool, as the ledger records it (product_shot, or a proxied tool's own name)",
  },
  phase: { type: 'string', arg: 'PHASE', help: `only runs in this phase: ${PHASES.join(', ')}` },
  limit: { type: 'string', arg: 'N', help: 'runs to show', range: [1, MAX_PAGE_SIZE], default: 50 },
  cursor: { type: 'string', arg: 'C', help: 'the next page, from the "More:" line the previous page printed' },

  // runledger record
  out: {
    type: 'string',
    arg: 'FILE',
    help: 'the transcript to write, one JSON object a line (format: record --schema)',
  },
  redact: {
    type: 'string',
    multiple: true,
    arg: 'REGEX',
    help:
      'also redact what this matches (repeatable); bearer tokens and the values of environment variables named ' +
      'like secrets (TOKEN, SECRET, KEY, ...) always are, and so are the values of secret-looking flags in the server command',
  },
  schema: { type: 'boolean', help: "print the transcript's JSON Schema and exit" },

  // runledger replay: the server
  server: {
    type: 'string',
    arg: '"COMMAND"',
    help: 'launch this server: over stdio, or with --url, reached at that URL once it serves there',
    shown: 'the command the transcript was recorded from',
  },
  url: { type: 'string', arg: 'URL', help: 'a Streamable HTTP server; alone, one already running (no SIGKILL faults)' },
  token: { type: 'string', arg: 'TOKEN', help: 'bearer token for --url', env: 'RUNLEDGER_TOKEN' },
  // runledger replay: the faults
  faults: {
    type: 'string',
    arg: 'LIST',
    help:
      'all, or some of: duplicate, burst, timeout, lost-answer, changed-args, cancel, stream-broken, kill-between, ' +
      'kill-mid-run; stream-broken needs --url, and the two kills need a server that replay launches',
    shown: 'all that apply',
  },
  seed: {
    type: 'string',
    arg: 'N',
    help: 'the same seed sends the same calls with the same faults',
    range: [0, MAX_SEED],
    shown: 'random',
  },
  'settle-ms': {
    type: 'string',
    arg: 'MS',
    help: 'how long every run may take to end after the faults',
    range: [1000, 3_600_000],
    default: 120_000,
  },
  burst: { type: 'string', arg: 'N', help: 'concurrent copies of a call in a burst', range: [2, 64], default: 8 },
  // runledger replay: the server's conventions
  profile: {
    type: 'string',
    arg: 'NAME|FILE',
    help: 'auto, runledger, proxy, or a JSON profile file (--profile-schema)',
    default: 'auto',
  },
  'key-argument': { type: 'string', arg: 'NAME', help: 'the argument that carries the idempotency key' },
  'run-id-field': {
    type: 'string',
    multiple: true,
    arg: 'FIELD',
    help: 'where an answer names its run: a dot path ("job.id"), or "_meta.NAME" for an entry of the result\'s _meta (repeatable, tried in order)',
  },
  'status-field': { type: 'string', arg: 'FIELD', help: "where an answer gives its run's status" },
  'done-words': {
    type: 'string',
    arg: 'LIST',
    help: 'status words of a run that ended well and is billed (comma-separated)',
  },
  'failed-words': { type: 'string', arg: 'LIST', help: 'status words of a run that ended otherwise' },
  'poll-tool': { type: 'string', arg: 'NAME', help: 'a read-only tool that answers for one run ...' },
  'poll-argument': { type: 'string', arg: 'NAME', help: '... the argument it takes the run id in ...' },
  'poll-wait-argument': {
    type: 'string',
    arg: 'NAME',
    help: '... and the one, in seconds, that makes it wait for the run to end',
  },
  'usage-tool': { type: 'string', arg: 'NAME', help: 'a read-only tool that counts runs and charges ...' },
  'usage-runs': { type: 'string', arg: 'FIELD', help: '... the field that counts runs ...' },
  'usage-charges': { type: 'string', arg: 'FIELD', help: '... and the field that counts charges' },
  'run-resource': {
    type: 'string',
    arg: 'TEMPLATE',
    help: 'a resource URI template that shows one run ("runs://{run_id}")',
  },
  // runledger replay: the verdict
  'require-all': {
    type: 'boolean',
    help: 'exit 4 unless every invariant was checked; the report names what was missing and the flag or profile field that supplies it',
  },
  report: {
    type: 'string',
    arg: 'FILE',
    help: 'write the whole report, every call included, as JSON (--report-schema)',
  },
  'report-schema': { type: 'boolean', help: "print the report's JSON Schema and exit" },
  'profile-schema': { type: 'boolean', help: "print a target profile's JSON Schema and exit" },

  help: { type: 'boolean', short: 'h', help: 'this help' },
  version: { type: 'boolean', short: 'v', help: 'the version' },
} as const satisfies Record<string, Flag>;

export type FlagName = keyof typeof FLAGS;

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
  flags: [
    'http',
    'host',
    'port',
    'stateless',
    'tokens',
    'max-body-bytes',
    'body-timeout-ms',
    'max-connections',
    'max-sessions',
    'max-tenant-sessions',
    'session-idle-ms',
    'allowed-hosts',
    'allowed-origins',
  ],
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
        flags: [
          'profile',
          'key-argument',
          'run-id-field',
          'status-field',
          'done-words',
          'failed-words',
          'poll-tool',
          'poll-argument',
          'poll-wait-argument',
          'usage-tool',
          'usage-runs',
          'usage-charges',
          'run-resource',
        ],
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

const WIDTH = 100;
const INDENT = 26;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

function paragraphs(text: string): string {
  return text
    .split('\n\n')
    .map((p) => wrap(p, WIDTH).join('\n'))
    .join('\n\n');
}

function flagLine(command: CommandName, name: FlagName, env: NodeJS.ProcessEnv): string {
  const flag: Flag = FLAGS[name];
  const head = `  ${flag.short === undefined ? '' : `-${flag.short}, `}--${name}${flag.arg === undefined ? '' : ` ${flag.arg}`}`;
  const notes: string[] = [];
  if (flag.range !== undefined) notes.push(`${flag.range[0]}–${flag.range[1]}`);
  if (flag.env !== undefined) notes.push(`env ${flag.env}`);
  const value = defaultOf(command, name, env) ?? flag.shown;
  if (value !== undefined) notes.push(`default: ${value}`);
  const text = notes.length === 0 ? flag.help : `${flag.help} (${notes.join('; ')})`;
  const body = wrap(text, WIDTH - INDENT);
  const first = head.length < INDENT ? head.padEnd(INDENT) + body[0] : `${head}\n${' '.repeat(INDENT)}${body[0]}`;
  return [first, ...body.slice(1).map((l) => ' '.repeat(INDENT) + l)].join('\n');
}

function commandBody(command: CommandName, env: NodeJS.ProcessEnv): string {
  const spec: Command = COMMANDS[command];
  const parts = [`Usage:\n${spec.usage.map((u) => `  runledger ${u}`).join('\n')}`];
  if (spec.about !== undefined) parts.push(paragraphs(spec.about));
  for (const group of spec.groups)
    parts.push(`${group.title}:\n${group.flags.map((f) => flagLine(command, f, env)).join('\n')}`);
  if (spec.after !== undefined) parts.push(paragraphs(spec.after));
  return parts.join('\n\n') + '\n';
}

/** `runledger <command> --help`; with no command, the list of commands and then serve's flags. */
export function helpText(command: CommandName | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (command !== undefined) {
    return `runledger ${COMMANDS[command].words.join(' ')} — ${COMMANDS[command].summary}\n\n${commandBody(command, env)}`;
  }
  const list = COMMAND_NAMES.map((name) => {
    const head = `  runledger ${COMMANDS[name].words.join(' ')}`.padEnd(INDENT);
    return wrap(COMMANDS[name].summary, WIDTH - INDENT)
      .map((line, i) => (i === 0 ? head : ' '.repeat(INDENT)) + line)
      .join('\n');
  });
  return (
    'runledger — an MCP server that makes generative tool calls safe to retry, and a fence in front of any MCP server\n\n' +
    `Commands:\n${list.join('\n')}\n\n` +
    'Each command takes flags of its own: runledger <command> --help lists them (runledger proxy --help,\n' +
    'runledger runs list --help, runledger record --help, runledger replay --help, ...).\n\n' +
    commandBody('serve', env)
  );
}
