// Flags of `record` and `replay`, checked once: a bad one is a UsageError (exit 2) naming the flag.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { integer, UsageError } from '../config.js';
import { MAX_SEED } from '../compose/prng.js';

export const FAULT_KINDS = ['duplicate', 'burst', 'timeout', 'lost-answer', 'changed-args', 'kill-between', 'kill-mid-run'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** Faults that SIGKILL the server and start it again, which needs a server the harness launched. */
export const LAUNCH_ONLY: readonly FaultKind[] = ['kill-between', 'kill-mid-run'];

export interface RecordOptions {
  out: string;
  redact: RegExp[];
  command: string[];
}

export type ReplayTarget =
  | { kind: 'launch'; command: string[]; fromTranscript: boolean }
  | { kind: 'url'; url: URL; token: string | undefined };

export interface ReplayOptions {
  transcript: string;
  /** Undefined until the transcript is read: then the command it was recorded from. */
  target: ReplayTarget | undefined;
  faults: FaultKind[];
  /** As given, for the re-run command: "all" stays "all", so it still applies to either target. */
  faultsAsked: string;
  seed: number | undefined;
  phaseDelayMs: number | undefined;
  settleMs: number;
  burst: number;
  report: string | undefined;
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

export function parseReplayArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ReplayOptions {
  const { values, positionals } = parseFlags('replay', argv, {
    server: { type: 'string' },
    url: { type: 'string' },
    token: { type: 'string' },
    faults: { type: 'string' },
    seed: { type: 'string' },
    'phase-delay-ms': { type: 'string' },
    'settle-ms': { type: 'string' },
    burst: { type: 'string' },
    report: { type: 'string' },
  });
  if (positionals.length !== 1) throw new UsageError('replay takes one transcript file: runledger replay FILE [--server "<command>" | --url URL]');
  if (values.server !== undefined && values.url !== undefined) throw new UsageError('give --server or --url, not both');
  const token = values.token ?? env.RUNLEDGER_TOKEN;
  if (values.token !== undefined && values.url === undefined) throw new UsageError('--token goes with --url');

  let target: ReplayTarget | undefined;
  if (values.url !== undefined) {
    let url: URL;
    try {
      url = new URL(values.url);
    } catch {
      throw new UsageError(`--url must be an http(s) URL such as http://127.0.0.1:8787/mcp, got "${values.url}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url must be http or https, got "${values.url}"`);
    target = { kind: 'url', url, token };
  } else if (values.server !== undefined) {
    const command = splitCommand(values.server);
    if (command.length === 0) throw new UsageError('--server needs a command, e.g. --server "runledger --db /tmp/replay.db"');
    target = { kind: 'launch', command, fromTranscript: false };
  }

  const faults = parseFaults(values.faults, target?.kind === 'url');
  const phaseDelayText = values['phase-delay-ms'];
  return {
    transcript: positionals[0]!,
    target,
    faults,
    faultsAsked: values.faults === undefined ? 'all' : faults.length === FAULT_KINDS.length ? 'all' : faults.join(','),
    seed: values.seed === undefined ? undefined : integer('--seed', values.seed, 0, 0, MAX_SEED),
    phaseDelayMs: phaseDelayText === undefined ? undefined : integer('--phase-delay-ms', phaseDelayText, 0, 0, 600_000),
    settleMs: integer('--settle-ms', values['settle-ms'], 120_000, 1000, 3_600_000),
    burst: integer('--burst', values.burst, 8, 2, 64),
    report: values.report,
  };
}

function parseFaults(text: string | undefined, overUrl: boolean): FaultKind[] {
  // "all" over --url is no error: the report lists the SIGKILL faults as not run, and why.
  if (text === undefined || text.trim() === 'all') return [...FAULT_KINDS];
  const kinds = text.split(',').map((kind) => kind.trim()).filter((kind) => kind !== '');
  if (kinds.length === 0) throw new UsageError(`--faults needs a list: all, or some of ${FAULT_KINDS.join(', ')}`);
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) throw new UsageError(`--faults: unknown fault "${kind}"; the faults are ${FAULT_KINDS.join(', ')}`);
    if (overUrl && LAUNCH_ONLY.includes(kind as FaultKind)) {
      throw new UsageError(`--faults ${kind} SIGKILLs and restarts the server, so it needs --server (a server replay launches), not --url`);
    }
  }
  return [...new Set(kinds)] as FaultKind[];
}

/** The value of `--flag V` or `--flag=V` in a command line, if it is there. */
export function flagValue(command: readonly string[], flag: string): string | undefined {
  for (const [i, part] of command.entries()) {
    if (part === flag) return command[i + 1];
    if (part.startsWith(`${flag}=`)) return part.slice(flag.length + 1);
  }
  return undefined;
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
