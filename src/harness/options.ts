// Flags of `record` and `replay`, as the table in src/commands/table.ts gives them: a bad one is a
// UsageError (exit 2) naming the flag.
import { FlagReader, route, UsageError } from '../command-line.js';
import { CONVENTION_FLAGS } from '../commands/harness-flags.js';
import { flagNames } from '../commands/table.js';
import { loadProfile, type ProfileChoice, type ProfileFlags } from './profile.js';

export const FAULT_KINDS = [
  'duplicate',
  'burst',
  'timeout',
  'lost-answer',
  'changed-args',
  'cancel',
  'stream-broken',
  'kill-between',
  'kill-mid-run',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** Faults that SIGKILL the server and start it again, which needs a server the harness launched. */
export const LAUNCH_ONLY: readonly FaultKind[] = ['kill-between', 'kill-mid-run'];
/** Faults that break an HTTP response stream, which needs a server reached over HTTP. */
export const HTTP_ONLY: readonly FaultKind[] = ['stream-broken'];

export interface RecordOptions {
  out: string;
  redact: RegExp[];
  command: string[];
}

/** A server replay launches (over stdio, or reached at `url` once it serves there), or one already at a URL. */
export type ReplayTarget =
  | { kind: 'launch'; command: string[]; fromTranscript: boolean; url: URL | undefined; token: string | undefined }
  | { kind: 'url'; url: URL; token: string | undefined };

export interface ReplayOptions {
  transcript: string;
  /** Undefined until the transcript is read: then the command it was recorded from. */
  target: ReplayTarget | undefined;
  faults: FaultKind[];
  /** As given, for the re-run command: "all" stays "all", so it still applies to either target. */
  faultsAsked: string;
  seed: number | undefined;
  settleMs: number;
  burst: number;
  report: string | undefined;
  profile: ProfileChoice;
  /** As given, for the re-run command. */
  profileAsked: string | undefined;
  profileFlags: ProfileFlags;
  /** The flags that set conventions, as given, for the re-run command. */
  conventionArgs: string[];
  /** Exit 4 when an invariant could not be checked, though none broke. */
  requireAll: boolean;
}

/** `argv` is what follows `runledger record`. */
export function parseRecordArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): RecordOptions {
  const { values, positionals, afterDashes: command } = route(['record', ...argv]);
  const read = new FlagReader('record', values, env);
  const out = read.text('out');
  if (positionals.length > 0)
    throw new UsageError(`record: unexpected "${positionals[0]}"; the server command goes after --`);
  if (out === undefined || out.trim() === '') throw new UsageError('record needs --out FILE, the transcript to write');
  if (command.length === 0)
    throw new UsageError('record needs the server command after --: runledger record --out FILE -- <command...>');
  const redact = read.list('redact').map((pattern) => {
    try {
      return new RegExp(pattern, 'g');
    } catch (err) {
      throw new UsageError(`--redact "${pattern}" is not a regular expression: ${(err as Error).message}`);
    }
  });
  return { out, redact, command };
}

const wordList = (flag: string, text: string | undefined) => {
  if (text === undefined) return undefined;
  const words = text
    .split(',')
    .map((w) => w.trim())
    .filter((w) => w !== '');
  if (words.length === 0) throw new UsageError(`--${flag} needs a comma-separated list of status words`);
  return words;
};

function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url must be an http(s) URL such as http://127.0.0.1:8787/mcp, got "${text}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--url must be http or https, got "${text}"`);
  return url;
}

/** `argv` is what follows `runledger replay`. */
export function parseReplayArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ReplayOptions {
  const routed = route(['replay', ...argv]);
  const { values } = routed;
  const read = new FlagReader('replay', values, env);
  // As parseArgs reads a line, words after "--" are positionals too.
  const positionals = [...routed.positionals, ...routed.afterDashes];
  if (positionals.length !== 1)
    throw new UsageError('replay takes one transcript file: runledger replay FILE [--server "<command>"] [--url URL]');
  const token = read.text('token');
  if (values.token !== undefined && values.url === undefined) throw new UsageError('--token goes with --url');

  const url = values.url === undefined ? undefined : parseUrl(values.url);
  let target: ReplayTarget | undefined;
  if (values.server !== undefined) {
    const command = splitCommand(values.server);
    if (command.length === 0)
      throw new UsageError('--server needs a command, e.g. --server "runledger --db /tmp/replay.db"');
    target = { kind: 'launch', command, fromTranscript: false, url, token };
  } else if (url !== undefined) {
    target = { kind: 'url', url, token };
  }

  const faults = parseFaults(values.faults, { canRestart: target?.kind !== 'url', overHttp: url !== undefined });
  const conventionArgs: string[] = [];
  // The flags that set a target's conventions, repeated as given in the re-run command.
  for (const name of flagNames(CONVENTION_FLAGS)) {
    const value = values[name];
    for (const one of value === undefined ? [] : Array.isArray(value) ? value : [value])
      conventionArgs.push(`--${name}`, one);
  }
  return {
    transcript: positionals[0]!,
    target,
    faults,
    faultsAsked: values.faults === undefined ? 'all' : faults.length === FAULT_KINDS.length ? 'all' : faults.join(','),
    seed: read.int('seed'),
    settleMs: read.number('settle-ms'),
    burst: read.number('burst'),
    report: values.report,
    profile: loadProfile(read.text('profile')!),
    profileAsked: values.profile,
    profileFlags: {
      keyArgument: values['key-argument'],
      runIdFields: values['run-id-field'],
      statusField: values['status-field'],
      doneWords: wordList('done-words', values['done-words']),
      failedWords: wordList('failed-words', values['failed-words']),
      pollTool: values['poll-tool'],
      pollArgument: values['poll-argument'],
      pollWaitArgument: values['poll-wait-argument'],
      usageTool: values['usage-tool'],
      usageRuns: values['usage-runs'],
      usageCharges: values['usage-charges'],
      runResource: values['run-resource'],
    },
    conventionArgs,
    requireAll: values['require-all'] === true,
  };
}

function parseFaults(text: string | undefined, can: { canRestart: boolean; overHttp: boolean }): FaultKind[] {
  // "all" is no error on any target: the report lists the faults it could not run there, and why.
  if (text === undefined || text.trim() === 'all') return [...FAULT_KINDS];
  const kinds = text
    .split(',')
    .map((kind) => kind.trim())
    .filter((kind) => kind !== '');
  if (kinds.length === 0) throw new UsageError(`--faults needs a list: all, or some of ${FAULT_KINDS.join(', ')}`);
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind))
      throw new UsageError(`--faults: unknown fault "${kind}"; the faults are ${FAULT_KINDS.join(', ')}`);
    if (!can.canRestart && LAUNCH_ONLY.includes(kind as FaultKind)) {
      throw new UsageError(
        `--faults ${kind} SIGKILLs and restarts the server, so it needs --server (a server replay launches; with --url too, it is reached there)`,
      );
    }
    if (!can.overHttp && HTTP_ONLY.includes(kind as FaultKind)) {
      throw new UsageError(
        `--faults ${kind} breaks an HTTP response stream, so it needs --url (with --server, replay launches the server and reaches it there)`,
      );
    }
  }
  return [...new Set(kinds)] as FaultKind[];
}

/** Splits a command line the way a POSIX shell would for words and quotes (no variables, no globs). */
export function splitCommand(text: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (c === '\\' && i + 1 < text.length && (quote === null || '"\\$`'.includes(text[i + 1]!))) {
      word = (word ?? '') + text[++i];
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= '';
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote !== null) throw new UsageError(`--server: unclosed ${quote} in "${text}"`);
  if (word !== null) words.push(word);
  return words;
}
