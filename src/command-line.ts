// The command line read against the table in src/commands/table.ts: which command it names, whether each
// flag given is one of that command's own, and each flag's value (the flag, its environment variable, or
// the default). Bad input is a UsageError (exit 2) naming the flag.
import { parseArgs } from 'node:util';
import type { Flag } from './commands/flag.js';
import {
  COMMAND_NAMES,
  COMMANDS,
  commandsTaking,
  defaultOf,
  FLAGS,
  flagsOf,
  parseArgsOptions,
  type CommandName,
  type FlagName,
  type Values,
} from './commands/table.js';

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

const ALL_FLAGS = Object.keys(FLAGS) as FlagName[];
const ALL_OPTIONS = parseArgsOptions(ALL_FLAGS);

function parseError(err: unknown, harness: 'record' | 'replay' | undefined): UsageError {
  const message = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
  return new UsageError(harness === undefined ? message : `${harness}: ${message}`, harness);
}

const spoken = (command: CommandName) => `runledger ${COMMANDS[command].words.join(' ')}`;

export function orList(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

/** A command line split into its command, that command's flags, its positionals, and what follows "--". */
export interface Routed {
  command: CommandName;
  /** A command was named (runledger serve --help), rather than implied (runledger --help). */
  named: boolean;
  /** What --help explains: the command named, every command of a group named alone (runledger runs --help), or none. */
  helpTopics: CommandName[];
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
  let helpTopics: CommandName[] | undefined;
  if (harness !== undefined) command = harness;
  else {
    const [first, second] = positionals;
    const group = COMMAND_NAMES.filter((name) => COMMANDS[name].words.length > 1 && COMMANDS[name].words[0] === first);
    if (parsed.values.help === true && group.length > 0 && !group.some((name) => COMMANDS[name].words[1] === second))
      helpTopics = group;
    if (first === undefined || first === 'serve') command = 'serve';
    else if (first === 'proxy' || first === 'demo') command = first;
    else if (first === 'runs' && second === 'list') command = 'runs-list';
    else if (first === 'runs' && second === 'show') command = 'runs-show';
    else if (first === 'providers' && second === 'check') command = 'providers-check';
    else if (first === 'providers' && second === 'schema') command = 'providers-schema';
    else if (first === 'record' || first === 'replay')
      throw new UsageError(`${first} goes first, before its flags: runledger ${first} ...`);
    else if (helpTopics !== undefined) command = helpTopics[0]!;
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
  const named = harness !== undefined || parsed.positionals.length > 0;
  return {
    command,
    named,
    helpTopics: helpTopics ?? (named ? [command] : []),
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
