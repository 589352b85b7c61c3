// The command line, routed and validated once, from the table in src/commands/table.ts: which command,
// its flags, their environment variables and defaults, as the typed config that command runs with.
// Bad input is a UsageError (exit 2) naming the flag.
import { FlagReader, route, UsageError, type Routed } from './command-line.js';
import type { CommandName } from './commands/table.js';
import {
  parseHttp,
  parseJobs,
  parseLedger,
  parseList,
  parseProviders,
  parseProxy,
  type HttpConfig,
  type JobsConfig,
  type LedgerChoice,
  type ListConfig,
  type ProvidersConfig,
  type ProxyConfig,
} from './config-sections.js';

export interface ServeConfig extends LedgerChoice {
  command: 'serve';
  concurrency: number;
  phaseDelayMs: number;
  leaseMs: number;
  providers: ProvidersConfig;
  jobs: JobsConfig;
  http: HttpConfig | null;
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
  /** --help: the commands to explain, none for the overview. */
  | { command: 'help'; topics: CommandName[] }
  | { command: 'version' }
  /** record --schema, replay --report-schema and --profile-schema: print a JSON Schema. */
  | { command: 'schema'; schema: 'transcript' | 'report' | 'profile' };

/** What runledger serves MCP as: itself, or the proxy in front of another server. */
export type ServingConfig = ServeConfig | ProxyCommandConfig;

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
  if (values.help === true) return { command: 'help', topics: routed.helpTopics };
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
