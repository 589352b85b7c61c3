// The command line, routed and validated once, from the table in commands.ts: which command, its
// flags, their environment variables and defaults. Bad input is a UsageError (exit 2) naming the flag.
import { parseArgs } from 'node:util';
import {
  COMMANDS,
  commandsTaking,
  defaultOf,
  FLAGS,
  flagsOf,
  LOG_LEVELS,
  parseArgsOptions,
  PROVIDERS,
  type CommandName,
  type Flag,
  type FlagName,
  type Values,
} from './commands.js';
import { PHASES, type Phase } from './ledger/index.js';

export { defaultDbPath, PROVIDERS } from './commands.js';

export class UsageError extends Error {
  /** The command whose flags were wrong, once known: its --help is the one to point to. */
  command: CommandName | undefined;
  constructor(message: string, command?: CommandName) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

/** The help that explains a usage error. */
export function helpFor(err: UsageError): string {
  return err.command === undefined ? 'runledger --help' : `runledger ${COMMANDS[err.command].words.join(' ')} --help`;
}

export type LogLevel = (typeof LOG_LEVELS)[number];
/** builtin, openai, or the name of a job provider a --provider-file defines (checked when the files are read). */
export type ProviderName = string;

/** Which ledger, and whose runs in it: every command that opens the ledger has these. */
export interface LedgerChoice {
  db: string;
  /** PostgreSQL only: the schema, and the most connections a process opens. */
  dbSchema: string | undefined;
  dbPoolSize: number | undefined;
  tenant: string;
  logLevel: LogLevel;
}

export interface ServeConfig extends LedgerChoice {
  command: 'serve';
  concurrency: number;
  phaseDelayMs: number;
  leaseMs: number;
  providers: ProvidersConfig;
  jobs: JobsConfig;
  http: HttpConfig | null;
}

/** Job providers declared in files (Replicate, fal, ...), and what serves them. */
export interface JobsConfig {
  /** Definition files (or shipped names), in the order given. */
  files: string[];
  /** Where providers send webhooks (…/webhooks/<name>); null: polling only. */
  publicUrl: string | null;
  orphanSearchMs: number;
  maxOutputBytes: number;
}

export interface ProxyCommandConfig extends LedgerChoice {
  command: 'proxy';
  leaseMs: number;
  http: HttpConfig | null;
  proxy: ProxyConfig;
}

export interface DemoConfig extends LedgerChoice {
  command: 'demo';
  /** Chosen by --db or RUNLEDGER_DB; otherwise the demo's own ledger. */
  dbGiven: boolean;
  phaseDelayMs: number;
}

export interface RunsListConfig extends LedgerChoice {
  command: 'runs-list';
  list: ListConfig;
}

export interface RunsShowConfig extends LedgerChoice {
  command: 'runs-show';
  runId: string;
}

/** record and replay: their flags were checked against the table; src/harness/options.ts reads them. */
export type HarnessConfig = { command: 'record'; args: string[] } | { command: 'replay'; args: string[] };

export type Config =
  | ServeConfig
  | ProxyCommandConfig
  | DemoConfig
  | RunsListConfig
  | RunsShowConfig
  | HarnessConfig
  | { command: 'providers-check'; file: string }
  | { command: 'providers-schema' }
  | { command: 'help'; topic: CommandName | undefined }
  | { command: 'version' }
  /** record --schema, replay --report-schema and --profile-schema: print a JSON Schema. */
  | { command: 'schema'; schema: 'transcript' | 'report' | 'profile' };

/** What runledger serves MCP as: itself, or the proxy in front of another server. */
export type ServingConfig = ServeConfig | ProxyCommandConfig;

export interface ListConfig {
  /** As the ledger records it: product_shot, or a proxied tool's own name. */
  tool: string | undefined;
  phase: Phase | undefined;
  limit: number;
  cursor: string | undefined;
}

export interface ProxyConfig {
  /** A stdio server this process launches, or a Streamable HTTP server's URL (and bearer token). */
  upstream: { command: string[] } | { url: string; token: string | undefined };
  /** Tools fenced even though annotated read-only, and tools passed through though they mutate. */
  fence: string[];
  pass: string[];
  /** An isError answer frees its key for another try instead of being replayed. */
  retryErrors: boolean;
  /** How long a retry waits for the first call, still in flight, before answering call_in_progress. */
  waitSeconds: number;
  upstreamTimeoutMs: number;
  /** Most upstream sessions open at once (one per tenant, or per session). */
  upstreamMax: number;
  /** Over HTTP, an upstream session unused this long is closed. */
  upstreamIdleMs: number;
  /** Each downstream session gets its own upstream session instead of sharing its tenant's. */
  upstreamPerSession: boolean;
}

export interface ProvidersConfig {
  /** The provider of every tool not named in `perTool`. */
  default: ProviderName;
  /** Tool name (without create_) → provider. */
  perTool: Map<string, ProviderName>;
  openai: {
    url: string;
    model: string;
    /** The environment variable that holds the API key: the key itself never passes through flags. */
    keyEnv: string;
    timeoutMs: number;
    sizes: { width: number; height: number }[] | 'any';
  };
}

export interface HttpConfig {
  host: string;
  port: number;
  stateless: boolean;
  tokensFile: string | undefined;
  maxBodyBytes: number;
  /** A request's headers, and then its body, must each arrive within this. */
  bodyTimeoutMs: number;
  /** Open connections; past it a new connection's request is answered 503 and the connection closed. */
  maxConnections: number;
  /** Sessions this process holds, over all tenants and per tenant; a session idle this long is closed. */
  maxSessions: number;
  maxTenantSessions: number;
  sessionIdleMs: number;
  /** Extra Host header values to accept, beyond this server's own loopback names. */
  allowedHosts: string[];
  /** Extra Origin values to accept, beyond http://localhost|127.0.0.1|[::1]:PORT. */
  allowedOrigins: string[];
}

/** What a tenant name may be, wherever one comes from (flag, environment or tokens file). */
export const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const TENANT_RULE = '1–64 letters, digits, ".", "_" or "-"';

const ALL_FLAGS = Object.keys(FLAGS) as FlagName[];
const ALL_OPTIONS = parseArgsOptions(ALL_FLAGS);

function parseError(err: unknown, harness: 'record' | 'replay' | undefined): UsageError {
  const message = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
  return new UsageError(harness === undefined ? message : `${harness}: ${message}`, harness);
}

const spoken = (command: CommandName) => `runledger ${COMMANDS[command].words.join(' ')}`;

function orList(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

/** A command line split into its command, that command's flags, its positionals, and what follows "--". */
interface Routed {
  command: CommandName;
  /** A command was named (runledger serve --help), rather than implied (runledger --help). */
  named: boolean;
  values: Values<CommandName>;
  positionals: string[];
  afterDashes: string[];
}

/**
 * Finds the command and checks that every flag given is one of its own. Flags may come before the
 * command (runledger --db x runs list), so the whole line is read once with every flag of the table;
 * record and replay go first, since what follows them is theirs.
 */
export function route(argv: string[]): Routed {
  const dashes = argv.indexOf('--');
  const own = dashes < 0 ? argv : argv.slice(0, dashes);
  const afterDashes = dashes < 0 ? [] : argv.slice(dashes + 1);
  const harness = own[0] === 'record' || own[0] === 'replay' ? own[0] : undefined;
  let parsed;
  try {
    parsed = parseArgs({
      args: harness === undefined ? own : own.slice(1),
      options: ALL_OPTIONS,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
  } catch (err) {
    throw parseError(err, harness);
  }
  let command: CommandName;
  let positionals = parsed.positionals;
  if (harness !== undefined) command = harness;
  else {
    const [first, second] = positionals;
    if (first === undefined || first === 'serve') command = 'serve';
    else if (first === 'proxy' || first === 'demo') command = first;
    else if (first === 'runs' && second === 'list') command = 'runs-list';
    else if (first === 'runs' && second === 'show') command = 'runs-show';
    else if (first === 'providers' && second === 'check') command = 'providers-check';
    else if (first === 'providers' && second === 'schema') command = 'providers-schema';
    else if (first === 'record' || first === 'replay')
      throw new UsageError(`${first} goes first, before its flags: runledger ${first} ...`);
    else if (first === 'runs')
      throw new UsageError('runs takes a subcommand: runledger runs list, or runledger runs show <run_id>.');
    else if (first === 'providers')
      throw new UsageError(
        'providers takes a subcommand: runledger providers check FILE, or runledger providers schema.',
      );
    else
      throw new UsageError(
        `unknown command "${first}"; the commands are ${orList(Object.values(COMMANDS).map((c) => c.words.join(' ')))}.`,
      );
    positionals = positionals.slice(first === undefined ? 0 : COMMANDS[command].words.length);
  }
  const allowed = flagsOf(command);
  for (const token of parsed.tokens) {
    if (token.kind !== 'option' || allowed.includes(token.name as FlagName)) continue;
    const takers = commandsTaking(token.name as FlagName).map(spoken);
    throw new UsageError(`--${token.name} goes with ${orList(takers)}, not with ${spoken(command)}.`, command);
  }
  return {
    command,
    named: harness !== undefined || parsed.positionals.length > 0,
    values: parsed.values as Values<CommandName>,
    positionals,
    afterDashes,
  };
}

/**
 * Reads one command's flags by the table: the flag as given, else its environment variable, else the
 * command's default. Names in messages are the flags', with the environment variable when it supplied the value.
 */
export class FlagReader {
  constructor(
    private readonly command: CommandName,
    private readonly values: Values<CommandName>,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  private raw(name: FlagName): unknown {
    return (this.values as Record<string, unknown>)[name];
  }

  /** Given on the command line. */
  onLine(name: FlagName): boolean {
    return this.raw(name) !== undefined;
  }

  /** Given on the command line or in the environment (not a default). */
  given(name: FlagName): boolean {
    const flag: Flag = FLAGS[name];
    return this.onLine(name) || (flag.env !== undefined && this.env[flag.env] !== undefined);
  }

  private source(name: FlagName): { text: string | undefined; from: string } {
    const flag: Flag = FLAGS[name];
    const given = this.raw(name);
    if (typeof given === 'string') return { text: given, from: `--${name}` };
    if (flag.env !== undefined && this.env[flag.env] !== undefined)
      return { text: this.env[flag.env], from: `--${name} (from ${flag.env})` };
    return { text: defaultOf(this.command, name, this.env), from: `--${name}` };
  }

  text(name: FlagName): string | undefined {
    return this.source(name).text;
  }

  bool(name: FlagName): boolean {
    return this.raw(name) === true;
  }

  list(name: FlagName): string[] {
    const given = this.raw(name);
    return Array.isArray(given) ? (given as string[]) : [];
  }

  /** A whole number within the flag's range; undefined only for a flag with no default, not given. */
  int(name: FlagName): number | undefined {
    const { text, from } = this.source(name);
    if (text === undefined) return undefined;
    const flag: Flag = FLAGS[name];
    const [min, max] = flag.range ?? [0, Number.MAX_SAFE_INTEGER];
    if (!/^\d+$/.test(text.trim()))
      throw new UsageError(`${from} must be a whole number from ${min} to ${max}, got "${text}"`);
    const n = Number(text);
    if (n < min || n > max) throw new UsageError(`${from} must be from ${min} to ${max}, got ${n}`);
    return n;
  }

  /** A whole number of a flag that has a default. */
  number(name: FlagName): number {
    const n = this.int(name);
    if (n === undefined) throw new Error(`--${name} has no default in the table`);
    return n;
  }
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config {
  const routed = route(argv);
  try {
    return commandConfig(argv, routed, env);
  } catch (err) {
    if (err instanceof UsageError) err.command ??= routed.command;
    throw err;
  }
}

function commandConfig(argv: string[], routed: Routed, env: NodeJS.ProcessEnv): Config {
  const { command, values } = routed;
  if (values.help === true) return { command: 'help', topic: routed.named ? command : undefined };
  if (values.version === true) return { command: 'version' };
  if (command === 'record' || command === 'replay') {
    if (values.schema === true) return { command: 'schema', schema: 'transcript' };
    if (values['report-schema'] === true) return { command: 'schema', schema: 'report' };
    if (values['profile-schema'] === true) return { command: 'schema', schema: 'profile' };
    return { command, args: argv.slice(1) };
  }
  if (command === 'providers-check') {
    const [file, more] = routed.positionals;
    if (file === undefined || more !== undefined || file.trim() === '')
      throw new UsageError('providers check takes one definition: runledger providers check FILE');
    return { command, file };
  }
  if (command === 'providers-schema') {
    if (routed.positionals.length > 0)
      throw new UsageError(`unexpected argument "${routed.positionals[0]}" after providers schema`);
    return { command };
  }
  if (command !== 'proxy' && routed.afterDashes.length > 0) {
    throw new UsageError('a command after "--" goes with runledger proxy (runledger proxy -- node server.js)');
  }
  const read = new FlagReader(command, values, env);
  const ledger = parseLedger(read);
  const [extra] = routed.positionals;
  switch (command) {
    case 'serve':
      if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"; runledger serve takes flags only`);
      return {
        command,
        ...ledger,
        concurrency: read.number('concurrency'),
        phaseDelayMs: read.number('phase-delay-ms'),
        leaseMs: read.number('lease-ms'),
        providers: parseProviders(read),
        jobs: parseJobs(read),
        http: parseHttp(read),
      };
    case 'proxy':
      if (extra !== undefined)
        throw new UsageError(
          `unexpected argument "${extra}": the upstream command goes after "--" (runledger proxy -- node server.js)`,
        );
      return {
        command,
        ...ledger,
        leaseMs: read.number('lease-ms'),
        http: parseHttp(read),
        proxy: parseProxy(read, routed.afterDashes),
      };
    case 'demo':
      if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}" after demo`);
      return { command, ...ledger, dbGiven: read.given('db'), phaseDelayMs: read.number('phase-delay-ms') };
    case 'runs-list':
      if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}" after runs list`);
      return { command, ...ledger, list: parseList(read) };
    case 'runs-show':
      if (routed.positionals.length !== 1 || extra === undefined)
        throw new UsageError('runs show takes exactly one run id: runledger runs show <run_id>');
      return { command, ...ledger, runId: extra };
  }
}

function parseLedger(read: FlagReader): LedgerChoice {
  const tenant = read.text('tenant')!;
  if (!TENANT.test(tenant)) throw new UsageError(`--tenant must be ${TENANT_RULE}, got "${tenant}"`);
  const db = read.text('db')!;
  if (db.trim() === '') throw new UsageError('--db must name a file (or :memory:), or be a postgres:// URL');
  const postgres = /^postgres(ql)?:\/\//i.test(db);
  const schemaGiven = read.given('db-schema');
  if (!postgres && (schemaGiven || read.given('db-pool-size'))) {
    throw new UsageError(
      `--${schemaGiven ? 'db-schema' : 'db-pool-size'} goes with a PostgreSQL --db (postgres://...)`,
    );
  }
  // Unset unless given: the ledger decides, and reads ?schema= from the URL.
  const dbSchema = schemaGiven ? read.text('db-schema') : undefined;
  if (dbSchema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(dbSchema)) {
    throw new UsageError(
      `--db-schema must be lower-case letters, digits and "_" (at most 63, not starting with a digit), got "${dbSchema}"`,
    );
  }
  if (postgres) {
    try {
      new URL(db);
    } catch {
      throw new UsageError('--db is not a valid PostgreSQL URL (postgres://user:password@host:port/database)');
    }
  }
  const logLevel = read.text('log-level')!;
  if (!isOneOf(LOG_LEVELS, logLevel))
    throw new UsageError(`--log-level must be ${orList([...LOG_LEVELS])}, got "${logLevel}"`);
  return { db, dbSchema, dbPoolSize: postgres ? read.int('db-pool-size') : undefined, tenant, logLevel };
}

const HTTP_ONLY = [
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
] as const satisfies readonly FlagName[];

function parseHttp(read: FlagReader): HttpConfig | null {
  if (!read.bool('http')) {
    const stray = HTTP_ONLY.find((flag) => read.given(flag));
    if (stray !== undefined) throw new UsageError(`--${stray} goes with --http`);
    return null;
  }
  if (read.bool('upstream-per-session') && read.bool('stateless')) {
    throw new UsageError(
      '--upstream-per-session needs sessions: it does not go with --stateless (every request would start an upstream)',
    );
  }
  return {
    host: read.text('host')!,
    port: read.number('port'),
    stateless: read.bool('stateless'),
    tokensFile: read.text('tokens'),
    maxBodyBytes: read.number('max-body-bytes'),
    bodyTimeoutMs: read.number('body-timeout-ms'),
    maxConnections: read.number('max-connections'),
    maxSessions: read.number('max-sessions'),
    maxTenantSessions: read.number('max-tenant-sessions'),
    sessionIdleMs: read.number('session-idle-ms'),
    allowedHosts: commaList(read.text('allowed-hosts')),
    allowedOrigins: commaList(read.text('allowed-origins')),
  };
}

function isOneOf<T extends string>(allowed: readonly T[], text: string): text is T {
  return (allowed as readonly string[]).includes(text);
}

function commaList(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function requireHttpUrl(flag: string, url: string): void {
  if (!/^https?:\/\/[^\s/]+/.test(url)) throw new UsageError(`${flag} must be an http(s) URL, got "${url}"`);
}

function parseList(read: FlagReader): ListConfig {
  const phase = read.text('phase');
  if (phase !== undefined && !isOneOf(PHASES, phase)) {
    throw new UsageError(`--phase must be one of ${PHASES.join(', ')}, got "${phase}"`);
  }
  const tool = read.text('tool');
  if (tool !== undefined && tool.trim() === '') throw new UsageError('--tool must name a tool');
  return { tool, phase, limit: read.number('limit'), cursor: read.text('cursor') };
}

function parseProxy(read: FlagReader, upstreamCommand: string[]): ProxyConfig {
  const url = read.text('upstream-url');
  if ((url === undefined) === (upstreamCommand.length === 0)) {
    throw new UsageError(
      'runledger proxy needs one upstream: a command after "--" (runledger proxy -- node server.js), or --upstream-url URL',
    );
  }
  if (url !== undefined) requireHttpUrl('--upstream-url', url);
  if (url === undefined && read.onLine('upstream-token'))
    throw new UsageError('--upstream-token goes with --upstream-url');
  const fence = commaList(read.text('fence'));
  const pass = commaList(read.text('pass'));
  const both = fence.find((name) => pass.includes(name));
  if (both !== undefined) throw new UsageError(`${both} is in both --fence and --pass`);
  return {
    upstream: url === undefined ? { command: upstreamCommand } : { url, token: read.text('upstream-token') },
    fence,
    pass,
    retryErrors: read.bool('retry-errors'),
    waitSeconds: read.number('wait-seconds'),
    upstreamTimeoutMs: read.number('upstream-timeout-ms'),
    upstreamMax: read.number('upstream-max'),
    upstreamIdleMs: read.number('upstream-idle-ms'),
    upstreamPerSession: read.bool('upstream-per-session'),
  };
}

function providerName(flag: string, text: string, defined: boolean): ProviderName {
  if (isOneOf(PROVIDERS, text)) return text;
  // A job provider's name: whether a --provider-file defines it is checked when the files are read.
  if (defined && /^[a-z][a-z0-9-]{0,31}$/.test(text)) return text;
  const others = defined
    ? ', or the name of a provider a --provider-file defines'
    : ' (or a job provider defined with --provider-file)';
  throw new UsageError(`${flag} must be ${PROVIDERS.join(' or ')}${others}, got "${text}"`);
}

function parseJobs(read: FlagReader): JobsConfig {
  const files = read.list('provider-file');
  if (files.some((file) => file.trim() === ''))
    throw new UsageError('--provider-file must name a file, or a shipped definition (replicate, fal)');
  const publicUrl = read.text('public-url') ?? null;
  if (publicUrl !== null) {
    requireHttpUrl('--public-url', publicUrl);
    if (/[?#]/.test(publicUrl))
      throw new UsageError(`--public-url is a base URL, without query or fragment; got "${publicUrl}"`);
  }
  return {
    files,
    publicUrl: publicUrl?.replace(/\/+$/, '') ?? null,
    orphanSearchMs: read.number('orphan-search-ms'),
    maxOutputBytes: read.number('max-output-bytes'),
  };
}

function parseProviders(read: FlagReader): ProvidersConfig {
  const defined = read.list('provider-file').length > 0;
  const perTool = new Map<string, ProviderName>();
  for (const item of read.list('provider-for')) {
    const match = /^(?:create_)?([a-z][a-z0-9_]*)=(\S+)$/.exec(item.trim());
    if (match === null)
      throw new UsageError(`--provider-for takes TOOL=PROVIDER (e.g. product_shot=openai), got "${item}"`);
    perTool.set(match[1]!, providerName('--provider-for', match[2]!, defined));
  }
  const url = read.text('provider-url')!;
  requireHttpUrl('--provider-url', url);
  const keyEnv = read.text('provider-key-env')!;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(keyEnv))
    throw new UsageError(`--provider-key-env must name an environment variable, got "${keyEnv}"`);
  const sizesText = read.text('provider-sizes')!;
  const sizes =
    sizesText === 'any'
      ? ('any' as const)
      : sizesText.split(',').map((size) => {
          const match = /^(\d{2,5})x(\d{2,5})$/.exec(size.trim());
          if (match === null)
            throw new UsageError(`--provider-sizes takes WxH sizes separated by commas, or "any"; got "${size}"`);
          return { width: Number(match[1]), height: Number(match[2]) };
        });
  return {
    default: providerName('--provider', read.text('provider')!, defined),
    perTool,
    openai: { url, model: read.text('provider-model')!, keyEnv, timeoutMs: read.number('provider-timeout-ms'), sizes },
  };
}
