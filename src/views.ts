// What an agent sees of a run: structured content for programs, and text that says what to do next.
import { z } from 'zod';
import { seedOf } from './engine/engine.js';
import { isTerminal, Phase, PHASES, type Run, type Usage } from './ledger/index.js';

export interface RunView {
  run_id: string;
  tool: string;
  phase: Phase;
  replayed: boolean;
  created_at: string;
  progress: number;
  phases: { phase: Phase; at: string }[];
  seed: number;
  cost_credits: number;
  billed: boolean;
  attempts: number;
  assets: { n: number; uri: string; mime: string; size: number; sha256: string; width: number; height: number }[];
  evaluation: Record<string, unknown> | null;
  error: { code: string; message: string; details: Record<string, unknown> } | null;
  /** The next step, in words an agent follows. */
  next: string;
}

export function runView(run: Run, replayed: boolean): RunView {
  const result = run.result ?? {};
  return {
    run_id: run.id,
    tool: run.tool,
    phase: run.phase,
    replayed,
    created_at: run.createdAt,
    progress: run.progress,
    phases: run.phases,
    seed: seedOf(run),
    cost_credits: run.cost,
    billed: run.phase === Phase.done,
    attempts: run.attempts,
    assets: (result.assets as RunView['assets'] | undefined) ?? [],
    evaluation: (result.evaluation as Record<string, unknown> | undefined) ?? null,
    error: run.error,
    next: nextStep(run),
  };
}

function nextStep(run: Run): string {
  switch (run.phase) {
    case Phase.done:
      return 'Done and billed once. Read the images through the asset URIs; calling create again with this key returns this same result for free.';
    case Phase.failed:
      return 'This run failed and was not billed. Sending the same key again returns this same failure; a new idempotency_key starts a new run.';
    case Phase.canceled:
      return 'This run was canceled and was not billed. A new idempotency_key starts a new run.';
    default:
      return `Still running (${run.phase}). Poll with poll_run and run_id ${run.id} (wait_seconds up to 50 blocks until it finishes); do not create again.`;
  }
}

export function runText(view: RunView): string {
  const head = `Run ${view.run_id} (${view.tool}) is ${view.phase}${view.replayed ? ' — a replay of the original request, not a new run' : ''}.`;
  const lines = [head];
  if (view.phase === Phase.done) {
    const score = view.evaluation?.score;
    lines.push(
      `${view.assets.length} image(s), ${view.cost_credits} credits billed once. Brand score ${typeof score === 'number' ? score.toFixed(2) : 'n/a'}.`,
    );
  } else if (!isTerminal(view.phase)) {
    lines.push(`Progress ${Math.round(view.progress * 100)}%.`);
  }
  if (view.error !== null) lines.push(`Error ${view.error.code}: ${view.error.message}`);
  lines.push(view.next);
  return lines.join(' ');
}

export function usageView(usage: Usage) {
  return {
    tenant: usage.tenant,
    runs: usage.runs,
    charges: usage.charges,
    credits: usage.credits,
    replays_absorbed: usage.replaysAbsorbed,
    by_tool: Object.fromEntries(
      Object.entries(usage.byTool).map(([tool, t]) => [
        tool,
        { runs: t.runs, charges: t.charges, credits: t.credits, replays_absorbed: t.replaysAbsorbed },
      ]),
    ),
  };
}

// ---- output schemas (JSON Schema for tools/list; every tool may also answer with an error) ----------

const errorSchema = z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()) });

const phaseEnum = z.enum(PHASES as [Phase, ...Phase[]]);

export const runViewSchema = z.object({
  run_id: z.string(),
  tool: z.string(),
  phase: phaseEnum,
  replayed: z.boolean().describe('true when this answer replays an earlier request with the same key'),
  created_at: z.string(),
  progress: z.number().min(0).max(1),
  phases: z.array(z.object({ phase: phaseEnum, at: z.string() })).describe('Every phase with its timestamp'),
  seed: z.number().int(),
  cost_credits: z.number().int(),
  billed: z.boolean(),
  attempts: z.number().int(),
  assets: z.array(
    z.object({
      n: z.number().int(),
      uri: z.string(),
      mime: z.string(),
      size: z.number().int(),
      sha256: z.string(),
      width: z.number().int(),
      height: z.number().int(),
    }),
  ),
  evaluation: z.record(z.string(), z.unknown()).nullable(),
  error: errorSchema.nullable(),
  next: z.string(),
});

/** A zod schema as the JSON Schema (draft 7) that tools/list carries, without its $schema line. */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output' = 'output'): { [k: string]: unknown } {
  const json = z.toJSONSchema(schema, { io, target: 'draft-7' }) as { [k: string]: unknown };
  delete json.$schema;
  return json;
}

/**
 * A tool's output schema as JSON Schema, loosened so that the same tool may instead answer with one
 * of `alternatives` or with `{error: {code, message, details}}`: clients validate errors too.
 */
export function outputSchemaOf(
  schema: z.ZodObject,
  alternatives: Record<string, z.ZodType> = {},
): { type: 'object'; [k: string]: unknown } {
  const json = jsonSchemaOf(schema) as { required?: string[]; properties?: object };
  const { required = [], ...rest } = json;
  const branches = { ...alternatives, error: errorSchema.nullable() };
  const extra = Object.fromEntries(
    Object.entries(branches).map(([name, alt]) => [name, jsonSchemaOf(alt)]),
  );
  return {
    ...rest,
    type: 'object',
    properties: { ...(json.properties ?? {}), ...extra },
    anyOf: [{ required }, ...Object.keys(branches).map((name) => ({ required: [name] }))],
  };
}
