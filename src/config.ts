// Flags and environment, validated once. Bad input exits with code 2 and a message naming the flag.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_PAGE_SIZE, PHASES, type Phase } from './ledger/index.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Config {
  command: 'serve' | 'proxy' | 'demo' | 'runs-list' | 'runs-show' | 'help' | 'version';
  /** Positional arguments after the command (e.g. the run id of `runs show`). */
  rest: string[];
  db: string;
  /** PostgreSQL only: the schema, and the most connections a process opens. */
  dbSchema: string | undefined;
  dbPoolSize: number | undefined;
  tenant: string;
  concurrency: number;
  phaseDelayMs: number;
  leaseMs: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  http: HttpConfig | null;
  providers: ProvidersConfig;
  /** runledger proxy: the upstream server and which of its tools are fenced. */
  proxy: ProxyConfig | null;
  /** runs list: which runs, how many, from where. */
  list: ListConfig | null;
  /** Job providers declared in files, and what serves them (see the JOB PROVIDERS block). */
  jobs: JobsConfig;
}

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

export const PROVIDERS = ['builtin', 'openai'] as const;
/** builtin, openai, or the name of a job provider defined by a --provider-file (checked at start-up). */
export type ProviderName = string;

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

// ==== JOB PROVIDERS (issue 20) ===================================================================
// Queue APIs declared in definition files (Replicate, fal, ...): the flags, their usage lines and their
// parsing, in one block, hooked in above by `...JOB_OPTIONS`, `${JOB_USAGE}` and `parseJobs`. A job
// provider is chosen per tool like any other (--provider, --provider-for TOOL=NAME).

export const JOB_OPTIONS = {
  'provider-file': { type: 'string', multiple: true },
  'public-url': { type: 'string' },
  'orphan-search-ms': { type: 'string' },
  'max-output-bytes': { type: 'string' },
} as const;

export const JOB_USAGE = `
Job providers (queue APIs such as Replicate or fal, declared in files; see docs/providers.md):
  --provider-file FILE    a provider definition (JSON), or the name of a shipped one: replicate, fal
                          (repeatable); its name then goes in --provider or --provider-for, e.g.
                          --provider-file replicate --provider-for product_video=replicate
  --public-url URL        the public base URL of this server (--http), where providers send webhooks
                          (URL/webhooks/<name>); without it jobs are polled, which always works
                          (env RUNLEDGER_PUBLIC_URL)
  --orphan-search-ms MS   how long a run whose submit's answer was lost in a crash looks for its job
                          (webhooks, the list endpoint) before ending outcome_unknown, never submitting
                          again; 1000–86400000 (default: 120000)
  --max-output-bytes N    the largest output (image or video) fetched and stored, 1024–1073741824
                          (default: 268435456)
`;

export interface JobsConfig {
  /** Definition files (or shipped names), in the order given. */
  files: string[];
  /** Where providers send webhooks (…/webhooks/<name>); null: polling only. */
  publicUrl: string | null;
  orphanSearchMs: number;
  maxOutputBytes: number;
}

function parseJobs(
  command: Config['command'],
  values: { 'provider-file'?: string[]; 'public-url'?: string; 'orphan-search-ms'?: string; 'max-output-bytes'?: string },
  env: NodeJS.ProcessEnv,
): JobsConfig {
  const files = values['provider-file'] ?? [];
  if (files.some((f) => f.trim() === '')) throw new UsageError('--provider-file must name a file, or a shipped definition (replicate, fal)');
  if (command === 'proxy' && files.length > 0) throw new UsageError('--provider-file goes with serving runledger\'s own tools, not with runledger proxy');
  const publicUrl = values['public-url'] ?? env.RUNLEDGER_PUBLIC_URL ?? null;
  if (publicUrl !== null) {
    requireHttpUrl('--public-url', publicUrl);
    if (/[?#]/.test(publicUrl)) throw new UsageError(`--public-url is a base URL, without query or fragment; got "${publicUrl}"`);
  }
  return {
    files,
    publicUrl: publicUrl?.replace(/\/+$/, '') ?? null,
    orphanSearchMs: integer('--orphan-search-ms', values['orphan-search-ms'], 120_000, 1000, 86_400_000),
    maxOutputBytes: integer('--max-output-bytes', values['max-output-bytes'], 256 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
  };
}
// ==== end JOB PROVIDERS ===========================================================================

export const USAGE = `runledger — an MCP server that makes generative tool calls safe to retry

Usage:
  runledger [options]                serve MCP over stdio (what Claude Desktop, Cursor and VS Code launch)
  runledger demo [options]           run the server as a child and show create, replay, refusal and billing
  runledger record --out FILE [--redact REGEX]... -- <server command...>
                                     proxy an MCP client to a stdio server, writing each tools/call to a transcript
  runledger replay FILE [options]    replay a transcript with faults and check the idempotency invariants
  runledger proxy [options] -- <server command...>
  runledger proxy [options] --upstream-url URL
                                     serve another MCP server's tools with every mutating one fenced by
                                     the ledger: a retry with the same idempotency_key never repeats it
  runledger runs list [options]      list runs in the ledger, newest first, with their keys:
                                     --tool NAME, --phase PHASE, --limit N (1–${MAX_PAGE_SIZE}, default 50), --cursor C
  runledger runs show <run_id>       show one run as JSON
  runledger providers check FILE     check a job provider definition and print what it understood
  runledger providers schema         print the JSON Schema of provider definitions

Options:
  --db PATH|URL           the ledger: a SQLite file, or postgres://user:password@host:port/database for
                          a ledger several replicas share (env RUNLEDGER_DB; default: ${defaultDbPath()})
  --db-schema NAME        PostgreSQL: the schema for the tables (env RUNLEDGER_DB_SCHEMA; also ?schema= in
                          the URL; default: runledger)
  --db-pool-size N        PostgreSQL: most connections this process opens for runs, 1–100 (env
                          RUNLEDGER_DB_POOL_SIZE; default: 10)
  --tenant NAME           tenant whose runs this process serves (env RUNLEDGER_TENANT; default: local)
  --concurrency N         runs rendered at once, 0–32; 0 serves only, leaving rendering to another
                          runledger process on the same ledger (default: 2)
  --phase-delay-ms MS     slow every phase by MS, 0–600000, to watch the phase stream (default: 0)
  --lease-ms MS           worker lease; a dead worker's run is resumed after it, 1000–3600000 (default: 30000)
  --log-level LEVEL       debug, info, warn or error; logs go to stderr (default: info)

Image providers (the built-in renderer is the default; see README "Providers"):
  --provider NAME         builtin or openai, for every tool (env RUNLEDGER_PROVIDER; default: builtin)
  --provider-for TOOL=NAME  this tool's provider, overriding --provider (repeatable)
  --provider-url URL      OpenAI-compatible API base (env RUNLEDGER_PROVIDER_URL; default: https://api.openai.com/v1)
  --provider-model NAME   image model (env RUNLEDGER_PROVIDER_MODEL; default: gpt-image-1)
  --provider-key-env VAR  environment variable holding the API key (default: OPENAI_API_KEY)
  --provider-timeout-ms MS  cut-off for one provider call, 1000–600000 (default: 120000)
  --provider-sizes LIST   sizes the model accepts, e.g. 1024x1024,1536x1024, or "any" to send the
                          tool's exact size (default: 1024x1024,1536x1024,1024x1536)
${JOB_USAGE}
Streamable HTTP (instead of stdio):
  --http                  serve MCP over Streamable HTTP at /mcp, and GET /healthz
  --host HOST             address to bind (default: 127.0.0.1); another than loopback needs tokens
  --port PORT             port, 0 picks a free one (default: 8787)
  --stateless             no sessions: every request stands alone (for load-balanced replicas)
  --tokens FILE           bearer tokens, one "TENANT TOKEN" pair per line, # comments
                          (env RUNLEDGER_TOKENS: TENANT:TOKEN,TENANT:TOKEN)
  --max-body-bytes N      largest request body, 1024–67108864 (default: 1048576)
  --body-timeout-ms MS    a request's headers, then its body, must each arrive within MS, or it is
                          answered 408 and its connection closed; 1000–600000 (default: 20000)
  --max-connections N     open connections; past it a request is answered 503 with Retry-After,
                          1–1000000 (default: 10000)
  --max-sessions N        sessions this process holds, all tenants together; past it initialize is
                          answered 503 with Retry-After, 1–1000000 (default: 5000)
  --max-tenant-sessions N sessions one tenant holds; past it initialize is answered 429 with
                          Retry-After, 1–1000000 (default: 1000)
  --session-idle-ms MS    a session with no request or stream open for MS is closed, 1000–86400000
                          (default: 1800000, 30 minutes)
  --allowed-hosts LIST    more Host header values to accept, comma-separated (e.g. mcp.example.com)
  --allowed-origins LIST  more Origin values to accept, comma-separated
  -h, --help              this help
  -v, --version           the version

Proxy (the ledger, tenant and --http flags above apply too):
  --upstream-url URL      the upstream as a Streamable HTTP server, instead of a command after --
  --upstream-token TOKEN  bearer token for --upstream-url (env RUNLEDGER_UPSTREAM_TOKEN)
  --fence LIST            also fence these tools, though annotated read-only (comma-separated)
  --pass LIST             pass these tools through unfenced, though they are not read-only
  --retry-errors          let a key be tried again after an isError answer, instead of replaying it
  --wait-seconds N        how long a retry waits for the first call still in flight, 0–300 (default: 25)
  --upstream-timeout-ms MS  longest silence of one upstream call, 1000–3600000 (default: 600000)
  --upstream-max N        most upstream sessions open at once, one per tenant: a stdio upstream is one
                          process per tenant, started with RUNLEDGER_TENANT set and {tenant} in its
                          command or URL filled in; 1–1000 (default: 16)
  --upstream-idle-ms MS   over --http, close a tenant's upstream session after MS unused, 1000–86400000
                          (default: 600000)
  --upstream-per-session  one upstream session per client session instead of per tenant (not with --stateless)

Record and replay take flags of their own: runledger record --help, runledger replay --help.
`;

/** Where the ledger lives unless told otherwise: the platform's per-user data directory. */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  const home = homedir();
  let base: string;
  if (platform === 'win32') base = env.LOCALAPPDATA ?? join(home, 'AppData', 'Local');
  else if (platform === 'darwin') base = join(home, 'Library', 'Application Support');
  else base = env.XDG_DATA_HOME || join(home, '.local', 'share');
  return join(base, 'runledger', 'ledger.db');
}

export function integer(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${flag} must be from ${min} to ${max}, got ${n}`);
  return n;
}

/** What a tenant name may be, wherever one comes from (flag, environment or tokens file). */
export const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const TENANT_RULE = '1–64 letters, digits, ".", "_" or "-"';

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config {
  // Everything after "--" is the upstream server's command line (runledger proxy), never our flags.
  const dashes = argv.indexOf('--');
  const upstreamCommand = dashes < 0 ? [] : argv.slice(dashes + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: dashes < 0 ? argv : argv.slice(0, dashes),
      allowPositionals: true,
      strict: true,
      options: {
        db: { type: 'string' },
        'db-schema': { type: 'string' },
        'db-pool-size': { type: 'string' },
        tenant: { type: 'string' },
        concurrency: { type: 'string' },
        'phase-delay-ms': { type: 'string' },
        'lease-ms': { type: 'string' },
        'log-level': { type: 'string' },
        provider: { type: 'string' },
        'provider-for': { type: 'string', multiple: true },
        'provider-url': { type: 'string' },
        'provider-model': { type: 'string' },
        'provider-key-env': { type: 'string' },
        'provider-timeout-ms': { type: 'string' },
        'provider-sizes': { type: 'string' },
        ...JOB_OPTIONS,
        http: { type: 'boolean' },
        host: { type: 'string' },
        port: { type: 'string' },
        stateless: { type: 'boolean' },
        tokens: { type: 'string' },
        'max-body-bytes': { type: 'string' },
        'body-timeout-ms': { type: 'string' },
        'max-connections': { type: 'string' },
        'max-sessions': { type: 'string' },
        'max-tenant-sessions': { type: 'string' },
        'session-idle-ms': { type: 'string' },
        'allowed-hosts': { type: 'string' },
        'allowed-origins': { type: 'string' },
        'upstream-url': { type: 'string' },
        'upstream-token': { type: 'string' },
        fence: { type: 'string' },
        pass: { type: 'string' },
        'retry-errors': { type: 'boolean' },
        'wait-seconds': { type: 'string' },
        'upstream-timeout-ms': { type: 'string' },
        'upstream-max': { type: 'string' },
        'upstream-idle-ms': { type: 'string' },
        'upstream-per-session': { type: 'boolean' },
        tool: { type: 'string' },
        phase: { type: 'string' },
        limit: { type: 'string' },
        cursor: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const { values, positionals } = parsed;
  const [first, second, ...rest] = positionals;
  let command: Config['command'];
  let extra: string[] = [];
  if (values.help) command = 'help';
  else if (values.version) command = 'version';
  else if (first === undefined) command = 'serve';
  else if (first === 'proxy') {
    command = first;
    if (second !== undefined) throw new UsageError(`unexpected argument "${second}": the upstream command goes after "--" (runledger proxy -- node server.js)`);
  } else if (first === 'demo') {
    command = first;
    if (second !== undefined) throw new UsageError(`unexpected argument "${second}" after ${first}`);
  } else if (first === 'runs' && second === 'list') {
    command = 'runs-list';
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}" after runs list`);
  } else if (first === 'runs' && second === 'show') {
    command = 'runs-show';
    if (rest.length !== 1) throw new UsageError('runs show takes exactly one run id: runledger runs show <run_id>');
    extra = rest;
  } else if (first === 'record' || first === 'replay') {
    throw new UsageError(`${first} goes first, before its flags: runledger ${first} ...`);
  } else if (first === 'runs') {
    throw new UsageError('runs takes a subcommand: runledger runs list | runledger runs show <run_id>');
  } else {
    throw new UsageError(`unknown command "${first}"`);
  }

  const tenant = values.tenant ?? env.RUNLEDGER_TENANT ?? 'local';
  if (!TENANT.test(tenant)) throw new UsageError(`--tenant must be ${TENANT_RULE}, got "${tenant}"`);
  const db = values.db ?? env.RUNLEDGER_DB ?? defaultDbPath(env);
  if (db.trim() === '') throw new UsageError('--db must name a file (or :memory:), or be a postgres:// URL');
  const postgres = /^postgres(ql)?:\/\//i.test(db);
  const dbSchema = values['db-schema'] ?? env.RUNLEDGER_DB_SCHEMA;
  const poolText = values['db-pool-size'] ?? env.RUNLEDGER_DB_POOL_SIZE;
  if (!postgres && (dbSchema !== undefined || poolText !== undefined)) {
    throw new UsageError(`--${dbSchema !== undefined ? 'db-schema' : 'db-pool-size'} goes with a PostgreSQL --db (postgres://...)`);
  }
  if (dbSchema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(dbSchema)) {
    throw new UsageError(`--db-schema must be lower-case letters, digits and "_" (at most 63, not starting with a digit), got "${dbSchema}"`);
  }
  if (postgres) {
    try {
      new URL(db);
    } catch {
      throw new UsageError('--db is not a valid PostgreSQL URL (postgres://user:password@host:port/database)');
    }
  }
  const logLevel = values['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    throw new UsageError(`--log-level must be debug, info, warn or error, got "${logLevel}"`);
  }
  const httpOnly = [
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
  ] as const;
  const stray = httpOnly.find((flag) => values[flag] !== undefined);
  if (!values.http && stray !== undefined) throw new UsageError(`--${stray} goes with --http`);
  if (values.http && command !== 'serve' && command !== 'proxy') throw new UsageError('--http serves MCP; it does not go with a command');
  const http: HttpConfig | null = values.http
    ? {
        host: values.host ?? '127.0.0.1',
        port: integer('--port', values.port, 8787, 0, 65535),
        stateless: values.stateless ?? false,
        tokensFile: values.tokens,
        maxBodyBytes: integer('--max-body-bytes', values['max-body-bytes'], 1024 * 1024, 1024, 64 * 1024 * 1024),
        bodyTimeoutMs: integer('--body-timeout-ms', values['body-timeout-ms'], 20_000, 1000, 600_000),
        maxConnections: integer('--max-connections', values['max-connections'], 10_000, 1, 1_000_000),
        maxSessions: integer('--max-sessions', values['max-sessions'], 5000, 1, 1_000_000),
        maxTenantSessions: integer('--max-tenant-sessions', values['max-tenant-sessions'], 1000, 1, 1_000_000),
        sessionIdleMs: integer('--session-idle-ms', values['session-idle-ms'], 30 * 60_000, 1000, 86_400_000),
        allowedHosts: commaList(values['allowed-hosts']),
        allowedOrigins: commaList(values['allowed-origins']),
      }
    : null;
  if (values['upstream-per-session'] === true && values.stateless === true) {
    throw new UsageError('--upstream-per-session needs sessions: it does not go with --stateless (every request would start an upstream)');
  }
  return {
    command,
    rest: extra,
    http,
    proxy: parseProxy(command, values, upstreamCommand, env),
    list: parseList(command, values),
    providers: parseProviders(values, env),
    jobs: parseJobs(command, values, env),
    db,
    dbSchema,
    dbPoolSize: poolText === undefined ? undefined : integer('--db-pool-size', poolText, 10, 1, 100),
    tenant,
    concurrency: integer('--concurrency', values.concurrency, 2, 0, 32),
    phaseDelayMs: integer('--phase-delay-ms', values['phase-delay-ms'], 0, 0, 600_000),
    leaseMs: integer('--lease-ms', values['lease-ms'], 30_000, 1000, 3_600_000),
    logLevel: logLevel as Config['logLevel'],
  };
}

function commaList(text: string | undefined): string[] {
  return (text ?? '').split(',').map((item) => item.trim()).filter((item) => item !== '');
}

function requireHttpUrl(flag: string, url: string): void {
  if (!/^https?:\/\/[^\s/]+/.test(url)) throw new UsageError(`${flag} must be an http(s) URL, got "${url}"`);
}

const LIST_FLAGS = ['tool', 'phase', 'limit', 'cursor'] as const;

function parseList(command: Config['command'], values: { [flag in (typeof LIST_FLAGS)[number]]?: string }): ListConfig | null {
  if (command !== 'runs-list') {
    const stray = LIST_FLAGS.find((flag) => values[flag] !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray} goes with runledger runs list`);
    return null;
  }
  const phase = values.phase;
  if (phase !== undefined && !(PHASES as readonly string[]).includes(phase)) {
    throw new UsageError(`--phase must be one of ${PHASES.join(', ')}, got "${phase}"`);
  }
  if (values.tool !== undefined && values.tool.trim() === '') throw new UsageError('--tool must name a tool');
  return { tool: values.tool, phase: phase as Phase | undefined, limit: integer('--limit', values.limit, 50, 1, MAX_PAGE_SIZE), cursor: values.cursor };
}

const PROXY_FLAGS = [
  'upstream-url',
  'upstream-token',
  'fence',
  'pass',
  'retry-errors',
  'wait-seconds',
  'upstream-timeout-ms',
  'upstream-max',
  'upstream-idle-ms',
  'upstream-per-session',
] as const;

function parseProxy(
  command: Config['command'],
  values: { [flag in (typeof PROXY_FLAGS)[number]]?: string | boolean },
  upstreamCommand: string[],
  env: NodeJS.ProcessEnv,
): ProxyConfig | null {
  if (command !== 'proxy') {
    const stray = PROXY_FLAGS.find((flag) => values[flag] !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray} goes with runledger proxy`);
    if (upstreamCommand.length > 0) throw new UsageError('a command after "--" goes with runledger proxy (runledger proxy -- node server.js)');
    return null;
  }
  const url = values['upstream-url'] as string | undefined;
  if ((url === undefined) === (upstreamCommand.length === 0)) {
    throw new UsageError('runledger proxy needs one upstream: a command after "--" (runledger proxy -- node server.js), or --upstream-url URL');
  }
  if (url !== undefined) requireHttpUrl('--upstream-url', url);
  const token = (values['upstream-token'] as string | undefined) ?? env.RUNLEDGER_UPSTREAM_TOKEN;
  if (url === undefined && values['upstream-token'] !== undefined) throw new UsageError('--upstream-token goes with --upstream-url');
  const fence = commaList(values.fence as string | undefined);
  const pass = commaList(values.pass as string | undefined);
  const both = fence.find((name) => pass.includes(name));
  if (both !== undefined) throw new UsageError(`${both} is in both --fence and --pass`);
  return {
    upstream: url === undefined ? { command: upstreamCommand } : { url, token },
    fence,
    pass,
    retryErrors: values['retry-errors'] === true,
    waitSeconds: integer('--wait-seconds', values['wait-seconds'] as string | undefined, 25, 0, 300),
    upstreamTimeoutMs: integer('--upstream-timeout-ms', values['upstream-timeout-ms'] as string | undefined, 600_000, 1000, 3_600_000),
    upstreamMax: integer('--upstream-max', values['upstream-max'] as string | undefined, 16, 1, 1000),
    upstreamIdleMs: integer('--upstream-idle-ms', values['upstream-idle-ms'] as string | undefined, 600_000, 1000, 86_400_000),
    upstreamPerSession: values['upstream-per-session'] === true,
  };
}

function providerName(flag: string, text: string, defined: boolean): ProviderName {
  if ((PROVIDERS as readonly string[]).includes(text)) return text;
  // A job provider's name: whether a --provider-file defines it is checked when the files are read.
  if (defined && /^[a-z][a-z0-9-]{0,31}$/.test(text)) return text;
  throw new UsageError(`${flag} must be ${PROVIDERS.join(' or ')}${defined ? ', or the name of a provider a --provider-file defines' : ' (or a job provider defined with --provider-file)'}, got "${text}"`);
}

function parseProviders(
  values: { [flag in 'provider' | 'provider-url' | 'provider-model' | 'provider-key-env' | 'provider-timeout-ms' | 'provider-sizes']?: string } & {
    'provider-for'?: string[];
    'provider-file'?: string[];
  },
  env: NodeJS.ProcessEnv,
): ProvidersConfig {
  const defined = (values['provider-file'] ?? []).length > 0;
  const perTool = new Map<string, ProviderName>();
  for (const item of values['provider-for'] ?? []) {
    const match = /^(?:create_)?([a-z][a-z0-9_]*)=(\S+)$/.exec(item.trim());
    if (match === null) throw new UsageError(`--provider-for takes TOOL=PROVIDER (e.g. product_shot=openai), got "${item}"`);
    perTool.set(match[1]!, providerName('--provider-for', match[2]!, defined));
  }
  const url = values['provider-url'] ?? env.RUNLEDGER_PROVIDER_URL ?? 'https://api.openai.com/v1';
  requireHttpUrl('--provider-url', url);
  const keyEnv = values['provider-key-env'] ?? 'OPENAI_API_KEY';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(keyEnv)) throw new UsageError(`--provider-key-env must name an environment variable, got "${keyEnv}"`);
  const sizesText = values['provider-sizes'] ?? '1024x1024,1536x1024,1024x1536';
  const sizes =
    sizesText === 'any'
      ? ('any' as const)
      : sizesText.split(',').map((size) => {
          const match = /^(\d{2,5})x(\d{2,5})$/.exec(size.trim());
          if (match === null) throw new UsageError(`--provider-sizes takes WxH sizes separated by commas, or "any"; got "${size}"`);
          return { width: Number(match[1]), height: Number(match[2]) };
        });
  return {
    default: providerName('--provider', values.provider ?? env.RUNLEDGER_PROVIDER ?? 'builtin', defined),
    perTool,
    openai: {
      url,
      model: values['provider-model'] ?? env.RUNLEDGER_PROVIDER_MODEL ?? 'gpt-image-1',
      keyEnv,
      timeoutMs: integer('--provider-timeout-ms', values['provider-timeout-ms'], 120_000, 1000, 600_000),
      sizes,
    },
  };
}
