// Flags of `record` and `replay`, checked once: a bad one is a UsageError (exit 2) naming the flag.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { integer, UsageError } from '../config.js';
import { loadProfile, type ProfileChoice, type ProfileFlags } from './profile.js';
import { MAX_SEED } from './prng.js';

export const FAULT_KINDS = ['duplicate', 'burst', 'timeout', 'lost-answer', 'changed-args', 'cancel', 'stream-broken', 'kill-between', 'kill-mid-run'] as const;
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

function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(command: string, args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message.replace(/\. To specify a positional argument.*$/s, '')}`);
  }
}

export function parseRecordArgs(argv: string[]): RecordOptions {
  const dash = argv.indexOf('--');
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  const { values, positionals } = parseFlags('record', dash < 0 ? argv : argv.slice(0, dash), {
    out: { type: 'string' },
    redact: { type: 'string', multiple: true },
  });
  if (positionals.length > 0) throw new UsageError(`record: unexpected "${positionals[0]}"; the server command goes after --`);
  if (values.out === undefined || values.out.trim() === '') throw new UsageError('record needs --out FILE, the transcript to write');
  if (command.length === 0) throw new UsageError('record needs the server command after --: runledger record --out FILE -- <command...>');
  const redact = (values.redact ?? []).map((pattern) => {
    try {
      return new RegExp(pattern, 'g');
    } catch (err) {
      throw new UsageError(`--redact "${pattern}" is not a regular expression: ${(err as Error).message}`);
    }
  });
  return { out: values.out, redact, command };
}

const CONVENTION_FLAGS = {
  'key-argument': { type: 'string' },
  'run-id-field': { type: 'string', multiple: true },
  'status-field': { type: 'string' },
  'done-words': { type: 'string' },
  'failed-words': { type: 'string' },
  'poll-tool': { type: 'string' },
  'poll-argument': { type: 'string' },
  'poll-wait-argument': { type: 'string' },
  'usage-tool': { type: 'string' },
  'usage-runs': { type: 'string' },
  'usage-charges': { type: 'string' },
  'run-resource': { type: 'string' },
} as const;

const wordList = (flag: string, text: string | undefined) => {
  if (text === undefined) return undefined;
  const words = text.split(',').map((w) => w.trim()).filter((w) => w !== '');
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
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url must be http or https, got "${text}"`);
  return url;
}

export function parseReplayArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ReplayOptions {
  const { values, positionals } = parseFlags('replay', argv, {
    server: { type: 'string' },
    url: { type: 'string' },
    token: { type: 'string' },
    faults: { type: 'string' },
    seed: { type: 'string' },
    'settle-ms': { type: 'string' },
    burst: { type: 'string' },
    report: { type: 'string' },
    profile: { type: 'string' },
    'require-all': { type: 'boolean' },
    ...CONVENTION_FLAGS,
  });
  if (positionals.length !== 1) throw new UsageError('replay takes one transcript file: runledger replay FILE [--server "<command>"] [--url URL]');
  const token = values.token ?? env.RUNLEDGER_TOKEN;
  if (values.token !== undefined && values.url === undefined) throw new UsageError('--token goes with --url');

  const url = values.url === undefined ? undefined : parseUrl(values.url);
  let target: ReplayTarget | undefined;
  if (values.server !== undefined) {
    const command = splitCommand(values.server);
    if (command.length === 0) throw new UsageError('--server needs a command, e.g. --server "runledger --db /tmp/replay.db"');
    target = { kind: 'launch', command, fromTranscript: false, url, token };
  } else if (url !== undefined) {
    target = { kind: 'url', url, token };
  }

  const faults = parseFaults(values.faults, { canRestart: target?.kind !== 'url', overHttp: url !== undefined });
  const conventionArgs: string[] = [];
  for (const name of Object.keys(CONVENTION_FLAGS) as (keyof typeof CONVENTION_FLAGS)[]) {
    const value = values[name];
    for (const one of value === undefined ? [] : Array.isArray(value) ? value : [value]) conventionArgs.push(`--${name}`, one);
  }
  return {
    transcript: positionals[0]!,
    target,
    faults,
    faultsAsked: values.faults === undefined ? 'all' : faults.length === FAULT_KINDS.length ? 'all' : faults.join(','),
    seed: values.seed === undefined ? undefined : integer('--seed', values.seed, 0, 0, MAX_SEED),
    settleMs: integer('--settle-ms', values['settle-ms'], 120_000, 1000, 3_600_000),
    burst: integer('--burst', values.burst, 8, 2, 64),
    report: values.report,
    profile: loadProfile(values.profile ?? 'auto'),
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
  const kinds = text.split(',').map((kind) => kind.trim()).filter((kind) => kind !== '');
  if (kinds.length === 0) throw new UsageError(`--faults needs a list: all, or some of ${FAULT_KINDS.join(', ')}`);
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) throw new UsageError(`--faults: unknown fault "${kind}"; the faults are ${FAULT_KINDS.join(', ')}`);
    if (!can.canRestart && LAUNCH_ONLY.includes(kind as FaultKind)) {
      throw new UsageError(`--faults ${kind} SIGKILLs and restarts the server, so it needs --server (a server replay launches; with --url too, it is reached there)`);
    }
    if (!can.overHttp && HTTP_ONLY.includes(kind as FaultKind)) {
      throw new UsageError(`--faults ${kind} breaks an HTTP response stream, so it needs --url (with --server, replay launches the server and reaches it there)`);
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
