// Argument fields that several MCP tools share, described once, and the parse that turns a zod
// failure into a typed validation_failed naming each field and what it allows (see issues.ts).
import { z } from 'zod';
import { ValidationFailedError } from '../errors.js';
import { MAX_JSON_DEPTH, nestedPast } from '../json-depth.js';
import { keyProblem, PHASES } from '../ledger/index.js';
import { orList, problemsOf, ruleOf } from './issues.js';

export const MAX_WAIT_SECONDS = 50;

export const keySchema = z
  // Missing or not a string says what a key is, as a bad one does.
  .string({ error: (issue) => keyProblem(issue.input) ?? undefined })
  .superRefine((key, ctx) => {
    const rule = keyProblem(key);
    if (rule !== null) ctx.addIssue({ code: 'custom', message: rule });
  })
  .describe(
    'Idempotency key: 16–128 printable ASCII characters. Make one new key (a UUID) per logical request; ' +
      'when retrying after a timeout or an error, send the SAME key — a new key starts a new, billed run.',
  );

export const waitSchema = z
  .number()
  .min(0)
  .max(MAX_WAIT_SECONDS)
  .default(0)
  .describe(
    `Seconds (0–${MAX_WAIT_SECONDS}) to wait for the run to finish before answering, with progress notifications. ` +
      'Running out of wait is not an error: the answer says the run is still going.',
  );

export const runIdSchema = z.string().min(1).max(100).describe('The run_id a create_* tool answered with.');

export const phaseSchema = z.enum(PHASES);

/** A generation tool's name, with or without its `create_` prefix, as one of `names`. */
export function toolNameSchema(names: readonly string[]) {
  return z
    .string()
    .transform((name) => name.replace(/^create_/, ''))
    .refine((name) => names.includes(name), {
      message: `must be one of ${orList(names.map((n) => JSON.stringify(n)))}`,
    });
}

/**
 * Refuses arguments nested past MAX_JSON_DEPTH, naming the top-level field that holds them. Runs before
 * anything recursive (zod, JSON.stringify, the fingerprint) sees them, so a depth bomb is a validation
 * failure instead of a stack overflow.
 */
export function assertNotTooDeep(args: unknown): void {
  const path = nestedPast(args, MAX_JSON_DEPTH);
  if (path === null) return;
  throw new ValidationFailedError([
    { field: String(path[0]), rule: `must not nest arrays and objects more than ${MAX_JSON_DEPTH} levels deep` },
  ]);
}

export function parse<S extends z.ZodType>(schema: S, args: unknown): z.output<S> {
  const parsed = schema.safeParse(args ?? {}, { error: ruleOf });
  if (parsed.success) return parsed.data;
  throw new ValidationFailedError(problemsOf(parsed.error.issues));
}
