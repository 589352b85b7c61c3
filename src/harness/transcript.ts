// The transcript: one JSON object a line, each with the format version `v`. `record` writes it and
// `replay` reads it; its zod schema below is the contract, published as JSON Schema by
// `runledger record --schema` for people and programs that write or read transcripts themselves.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { UsageError } from '../command-line.js';
import { mapStrings, type JsonObject } from './json.js';

export const TRANSCRIPT_VERSION = 1;

const v = z.literal(TRANSCRIPT_VERSION).describe('The format version, on every line');
const at = z.string({ error: 'must be a time (ISO 8601)' }).optional().describe('When, as an ISO 8601 time');
const object = (what: string) => z.record(z.string(), z.unknown(), { error: `must be ${what}` });

export const OUTCOMES = ['answered', 'error', 'cancelled', 'unanswered'] as const;
export type CallOutcome = (typeof OUTCOMES)[number];

/** The start of a recording: what was recorded, by what. */
export const SessionLineSchema = z
  .object({
    v,
    type: z.literal('session'),
    at,
    recorder: z
      .string({ error: 'must be a string' })
      .optional()
      .describe('The program that recorded, with its version'),
    command: z
      .array(z.string(), { error: 'must be a list of strings' })
      .describe('The server command line, secrets redacted'),
  })
  .describe('The first line: the recording and the server command it was made from');

/** The server's identity, from its answer to initialize. */
export const ServerLineSchema = z
  .object({
    v,
    type: z.literal('server'),
    at,
    name: z.string({ error: 'must be a string' }),
    version: z
      .string({ error: 'must be a string' })
      .describe("The server's own version, from its answer to initialize"),
    protocol_version: z.string().optional(),
  })
  .describe("The server's name and version, from its answer to initialize");

/** One tools/call and what became of it. */
export const CallLineSchema = z
  .object({
    v,
    type: z.literal('call'),
    seq: z
      .int({ error: 'must be a whole number' })
      .min(1, { error: 'must be a whole number from 1' })
      .describe('The order the client sent its calls in, from 1; replay follows it'),
    at,
    ms: z
      .number({ error: 'must be a number of milliseconds' })
      .min(0, { error: 'must be a number of milliseconds' })
      .describe('From the request to its answer (or its cancellation)'),
    tool: z.string({ error: 'must be a string' }),
    arguments: object('an object'),
    outcome: z.enum(OUTCOMES, { error: `must be ${OUTCOMES.join(', ')}` }),
    result: object('an object').optional().describe('The CallToolResult, when answered'),
    error: z
      .object(
        { code: z.number(), message: z.string(), data: z.unknown().optional() },
        { error: 'must be a JSON-RPC error: {code, message}' },
      )
      .optional()
      .describe('The JSON-RPC error, when the server answered with one'),
  })
  .refine((line) => line.outcome !== 'answered' || line.result !== undefined, {
    path: ['result'],
    error: 'must be an object when outcome is answered',
  })
  .describe('One tools/call and what became of it');

export const TranscriptLineSchema = z
  .discriminatedUnion('type', [SessionLineSchema, ServerLineSchema, CallLineSchema])
  .describe('One line of a runledger transcript (JSON Lines: one object a line)');

export type SessionLine = z.infer<typeof SessionLineSchema>;
export type ServerLine = z.infer<typeof ServerLineSchema>;
export type CallLine = z.infer<typeof CallLineSchema>;
export type TranscriptLine = z.infer<typeof TranscriptLineSchema>;

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

const TYPES = ['session', 'server', 'call'];

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
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new UsageError(`${where}: each line must be a JSON object`);
  const line = value as JsonObject;
  // The version and the type first: they say which other fields to expect.
  if (line.v !== TRANSCRIPT_VERSION) {
    throw new UsageError(
      `${where}: transcript version ${JSON.stringify(line.v)} is not one this runledger reads (it reads v: ${TRANSCRIPT_VERSION})`,
    );
  }
  if (!TYPES.includes(line.type as string))
    throw new UsageError(`${where}: "type" must be session, server or call, got ${JSON.stringify(line.type)}`);
  const parsed = TranscriptLineSchema.safeParse(line);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new UsageError(`${where}: "${issue.path.join('.')}" ${issue.message}`);
}

/** Names whose values are secrets: environment variables, and command-line flags that take one. */
const SECRET_NAME = /token|secret|passw(or)?d|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth/i;
const BEARER = /\bBearer\s+[A-Za-z0-9._~+/-]+=*/gi;
export const REDACTED = '[REDACTED]';

/**
 * Redacts secrets from everything a transcript holds: bearer tokens, the values of environment
 * variables whose names say they are secrets, and whatever the user's patterns match.
 */
export function createRedactor(
  patterns: readonly RegExp[],
  env: NodeJS.ProcessEnv = process.env,
): (value: unknown) => unknown {
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
    if (previous !== undefined && /^--?[^=]+$/.test(previous) && SECRET_NAME.test(previous) && !part.startsWith('-'))
      return REDACTED;
    return part;
  });
}
