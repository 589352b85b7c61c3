// The transcript: one JSON object a line, each with the format version `v`. `record` writes it and
// `replay` reads it; the README documents it for people who write or read transcripts by hand.
import { readFileSync } from 'node:fs';
import { UsageError } from '../config.js';

export const TRANSCRIPT_VERSION = 1;

export type JsonObject = { [key: string]: unknown };

/** The start of a recording: what was recorded, by what. */
export interface SessionLine {
  v: 1;
  type: 'session';
  at: string;
  recorder: string;
  command: string[];
}

/** The server's identity, from its answer to initialize. */
export interface ServerLine {
  v: 1;
  type: 'server';
  at: string;
  name: string;
  version: string;
  protocol_version: string;
}

export type CallOutcome = 'answered' | 'error' | 'cancelled' | 'unanswered';

/** One tools/call and what became of it. */
export interface CallLine {
  v: 1;
  type: 'call';
  /** The order the client sent its calls in, from 1; replay follows it. */
  seq: number;
  at: string;
  /** From the request to its answer (or its cancellation). */
  ms: number;
  tool: string;
  arguments: JsonObject;
  outcome: CallOutcome;
  /** The CallToolResult, when answered. */
  result?: JsonObject;
  /** The JSON-RPC error, when the server answered with one. */
  error?: { code: number; message: string; data?: unknown };
}

export type TranscriptLine = SessionLine | ServerLine | CallLine;

export interface RecordedCall extends CallLine {
  /** Where the call stands in its file, for messages that point at it. */
  line: number;
}

export interface Transcript {
  file: string;
  command: string[] | undefined;
  server: { name: string; version: string } | undefined;
  calls: RecordedCall[];
}

const OUTCOMES: readonly CallOutcome[] = ['answered', 'error', 'cancelled', 'unanswered'];
export const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Reads and checks a transcript; any problem is a UsageError naming the file and line. */
export function readTranscript(file: string): Transcript {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read transcript ${file}: ${(err as Error).message}`);
  }
  const transcript: Transcript = { file, command: undefined, server: undefined, calls: [] };
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    if (raw.trim() === '') continue;
    const where = `${file}:${index + 1}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (err) {
      throw new UsageError(`${where}: not JSON (${(err as Error).message})`);
    }
    const line = checkLine(parsed, where);
    if (line.type === 'session') transcript.command ??= line.command;
    else if (line.type === 'server') transcript.server ??= { name: line.name, version: line.version };
    else transcript.calls.push({ ...line, line: index + 1 });
  }
  if (transcript.calls.length === 0) throw new UsageError(`${file} holds no tools/call to replay`);
  transcript.calls.sort((a, b) => a.seq - b.seq);
  return transcript;
}

function checkLine(value: unknown, where: string): TranscriptLine {
  if (!isObject(value)) throw new UsageError(`${where}: each line must be a JSON object`);
  if (value.v !== TRANSCRIPT_VERSION) {
    throw new UsageError(`${where}: transcript version ${JSON.stringify(value.v)} is not one this runledger reads (it reads v: ${TRANSCRIPT_VERSION})`);
  }
  const need = (field: string, ok: boolean, what: string) => {
    if (!ok) throw new UsageError(`${where}: "${field}" must be ${what}`);
  };
  const isString = (field: string) => typeof value[field] === 'string';
  switch (value.type) {
    case 'session':
      need('command', Array.isArray(value.command) && value.command.every((part) => typeof part === 'string'), 'a list of strings');
      break;
    case 'server':
      need('name', isString('name'), 'a string');
      need('version', isString('version'), 'a string');
      break;
    case 'call':
      need('seq', Number.isInteger(value.seq), 'a whole number');
      need('ms', typeof value.ms === 'number' && value.ms >= 0, 'a number of milliseconds');
      need('tool', isString('tool'), 'a string');
      need('arguments', isObject(value.arguments), 'an object');
      need('outcome', OUTCOMES.includes(value.outcome as CallOutcome), OUTCOMES.join(', '));
      if (value.outcome === 'answered') need('result', isObject(value.result), 'an object when outcome is answered');
      break;
    default:
      throw new UsageError(`${where}: "type" must be session, server or call, got ${JSON.stringify(value.type)}`);
  }
  return value as unknown as TranscriptLine;
}

/** A JSON value with every string in it, at any depth, passed through `map`; keys stay as they are. */
export function mapStrings(value: unknown, map: (text: string) => string): unknown {
  if (typeof value === 'string') return map(value);
  if (Array.isArray(value)) return value.map((item) => mapStrings(item, map));
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapStrings(v, map)]));
  return value;
}

/** Names whose values are secrets: environment variables, and command-line flags that take one. */
const SECRET_NAME = /token|secret|passw(or)?d|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth/i;
const BEARER = /\bBearer\s+[A-Za-z0-9._~+/-]+=*/gi;
export const REDACTED = '[REDACTED]';

/**
 * Redacts secrets from everything a transcript holds: bearer tokens, the values of environment
 * variables whose names say they are secrets, and whatever the user's patterns match.
 */
export function createRedactor(patterns: readonly RegExp[], env: NodeJS.ProcessEnv = process.env): (value: unknown) => unknown {
  const envValues = Object.entries(env)
    .filter(([name, value]) => SECRET_NAME.test(name) && value !== undefined && value.length >= 8)
    .map(([, value]) => value!)
    // Longest first, so a secret that contains another is redacted whole.
    .sort((a, b) => b.length - a.length);
  const redactString = (text: string): string => {
    let out = text.replace(BEARER, `Bearer ${REDACTED}`);
    for (const secret of envValues) out = out.split(secret).join(REDACTED);
    for (const pattern of patterns) out = out.replace(pattern, REDACTED);
    return out;
  };
  return (value) => mapStrings(value, redactString);
}

/** A command line with the values of secret-looking flags (`--token X`, `--api-key=X`) redacted. */
export function redactCommand(command: readonly string[]): string[] {
  return command.map((part, i) => {
    const flag = /^(--?[^=]+)=/.exec(part);
    if (flag !== null && SECRET_NAME.test(flag[1]!)) return `${flag[1]}=${REDACTED}`;
    const previous = command[i - 1];
    if (previous !== undefined && /^--?[^=]+$/.test(previous) && SECRET_NAME.test(previous) && !part.startsWith('-')) return REDACTED;
    return part;
  });
}
