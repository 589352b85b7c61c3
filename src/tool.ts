// What a generation tool in tools/ is. Adding a tool is adding one file that exports one of these;
// the server adds `idempotency_key`, `wait_seconds` and `dry_run` to its input schema.
import { z } from 'zod';
import { brandKitSchema, DEFAULT_BRAND_KIT, type BrandKit } from './brand.js';
import type { PromptPlan } from './compose/prompt.js';
import { MAX_SEED } from './prng.js';
import type { Scene, SizeTarget } from './compose/scene.js';

/** Fields every generation tool shares, described once. */
export const commonFields = {
  brand_kit: brandKitSchema.default(DEFAULT_BRAND_KIT),
  seed: z
    .number()
    .int()
    .min(0)
    .max(MAX_SEED)
    .optional()
    .describe(
      `Integer 0..${MAX_SEED} that picks layout and decoration. Omit it and one is derived from the ` +
        'arguments; the result always echoes the seed used. Same arguments + seed = the same images.',
    ),
};

interface ToolBase<Input extends z.ZodObject> {
  /** Snake-case name; the MCP tool is `create_<name>`. */
  name: string;
  title: string;
  /** Agent-facing description of what the tool makes and its cost; the server adds the retry wording. */
  description: string;
  /** Zod object of the tool's own fields, each with a `.describe()` an agent reads. */
  input: Input;
  /** Credits charged once when a run of this tool reaches `done`. */
  cost(args: z.output<Input>): number;
  /** The brand kit the rubric scores the rendered images against. */
  brandKit(args: z.output<Input>): BrandKit;
}

/** A tool that makes images: by the built-in renderer (scenes), a prompt-based API, or a job provider. */
export interface ImageTool<Input extends z.ZodObject = z.ZodObject> extends ToolBase<Input> {
  kind?: 'image';
  /** For the built-in renderer: brief + brand + seed → one scene per variant. Pure and deterministic. */
  compose(args: z.output<Input>, seed: number): Scene[];
  /** For a prompt-based provider (or a job provider): brief + brand → one prompt, its target size and how many images. */
  prompt(args: z.output<Input>): PromptPlan;
}

/**
 * A tool whose work only a job provider (a queue API) does: motion, say. It is served only where one
 * is configured for it; nothing in runledger fakes what it makes.
 */
export interface JobTool<Input extends z.ZodObject = z.ZodObject> extends ToolBase<Input> {
  kind: 'job';
  /** The request fields it gives a job provider (what {request.FIELD} in a definition may name). */
  jobFields: readonly string[];
  /** brief + brand + seed → what a job provider is asked. Pure and deterministic. */
  job(args: z.output<Input>, seed: number): JobPlan;
}

export type GenerationTool<Input extends z.ZodObject = z.ZodObject> = ImageTool<Input> | JobTool<Input>;

/** What a run asks of a job provider: request fields by name, and images of earlier runs to send. */
export interface JobPlan {
  fields: Record<string, unknown>;
  /** Fields whose value is an image of an earlier run of the same tenant, read when the job is submitted (sent as a data: URI). */
  runImages: Record<string, { run_id: string; n: number }>;
  /** The size asked for: what the rubric's size check reads of an image output. */
  target: SizeTarget;
}

/** The request fields an image tool gives a job provider. */
export const IMAGE_JOB_FIELDS = ['prompt', 'width', 'height', 'aspect', 'count', 'seed'] as const;

/** An image tool's job plan: its prompt plan as request fields. */
export function imageJobPlan(plan: PromptPlan, seed: number): JobPlan {
  const { width, height } = plan.target;
  return {
    fields: { prompt: plan.prompt, width, height, aspect: aspectOf(width, height), count: plan.count, seed },
    runImages: {},
    target: plan.target,
  };
}

/** "16:9" for 1920×1080: the ratio in lowest terms. */
export function aspectOf(width: number, height: number): string {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const d = gcd(width, height);
  return `${width / d}:${height / d}`;
}

export function jobFieldsOf(tool: GenerationTool): readonly string[] {
  return tool.kind === 'job' ? tool.jobFields : IMAGE_JOB_FIELDS;
}
