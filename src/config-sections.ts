// The parts of a command's config (src/config.ts) that more than one command shares, or that have rules
// of their own, each beside the parser that reads it from the flags: the ledger, Streamable HTTP, the
// runs list, the proxy, job providers and image providers.
import { orList, UsageError, type FlagReader } from './command-line.js';
import { LOG_LEVELS } from './commands/ledger-flags.js';
import { PROVIDERS } from './commands/provider-flags.js';
import { HTTP_FLAGS } from './commands/server-flags.js';
import { flagNames } from './commands/table.js';
import { PHASES, type Phase } from './ledger/index.js';

export type LogLevel = (typeof LOG_LEVELS)[number];
/** builtin, openai, or the name of a job provider a --provider-file defines (checked when the files are read). */
export type ProviderName = string;

/** What a tenant name may be, wherever one comes from (flag, environment or tokens file). */
export const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const TENANT_RULE = '1–64 letters, digits, ".", "_" or "-"';

/** Which ledger, and whose runs in it: every command that opens the ledger has these. */
export interface LedgerChoice {
  db: string;
  /** PostgreSQL only: the schema, and the most connections a process opens. */
  dbSchema: string | undefined;
  dbPoolSize: number | undefined;
  tenant: string;
  logLevel: LogLevel;
}

export function parseLedger(read: FlagReader): LedgerChoice {
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

const HTTP_ONLY = flagNames(HTTP_FLAGS).filter((flag) => flag !== 'http');

export function parseHttp(read: FlagReader): HttpConfig | null {
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

export interface ListConfig {
  /** As the ledger records it: product_shot, or a proxied tool's own name. */
  tool: string | undefined;
  phase: Phase | undefined;
  limit: number;
  cursor: string | undefined;
}

export function parseList(read: FlagReader): ListConfig {
  const phase = read.text('phase');
  if (phase !== undefined && !isOneOf(PHASES, phase)) {
    throw new UsageError(`--phase must be one of ${PHASES.join(', ')}, got "${phase}"`);
  }
  const tool = read.text('tool');
  if (tool !== undefined && tool.trim() === '') throw new UsageError('--tool must name a tool');
  return { tool, phase, limit: read.number('limit'), cursor: read.text('cursor') };
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

export function parseProxy(read: FlagReader, upstreamCommand: string[]): ProxyConfig {
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

/** Job providers declared in files (Replicate, fal, ...), and what serves them. */
export interface JobsConfig {
  /** Definition files (or shipped names), in the order given. */
  files: string[];
  /** Where providers send webhooks (…/webhooks/<name>); null: polling only. */
  publicUrl: string | null;
  orphanSearchMs: number;
  maxOutputBytes: number;
}

export function parseJobs(read: FlagReader): JobsConfig {
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

function providerName(flag: string, text: string, defined: boolean): ProviderName {
  if (isOneOf(PROVIDERS, text)) return text;
  // A job provider's name: whether a --provider-file defines it is checked when the files are read.
  if (defined && /^[a-z][a-z0-9-]{0,31}$/.test(text)) return text;
  const others = defined
    ? ', or the name of a provider a --provider-file defines'
    : ' (or a job provider defined with --provider-file)';
  throw new UsageError(`${flag} must be ${PROVIDERS.join(' or ')}${others}, got "${text}"`);
}

export function parseProviders(read: FlagReader): ProvidersConfig {
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
