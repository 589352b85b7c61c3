// What a generation tool in tools/ is. Adding a tool is adding one file that exports one of these;
// the server adds `idempotency_key`, `wait_seconds` and `dry_run` to its input schema.
import { z } from 'zod';
import { brandKitSchema, DEFAULT_BRAND_KIT, type BrandKit } from './brand.js';
import type { PromptPlan } from './compose/prompt.js';
import { MAX_SEED } from './prng.js';
import type { Scene } from './compose/scene.js';

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

export interface GenerationTool<Input extends z.ZodObject = z.ZodObject> {
  /** Snake-case name; the MCP tool is `create_<name>`. */
  name: string;
  title: string;
  /** Agent-facing description of what the tool makes and its cost; the server adds the retry wording. */
  description: string;
  /** Zod object of the tool's own fields, each with a `.describe()` an agent reads. */
  input: Input;
  /** Credits charged once when a run of this tool reaches `done`. */
  cost(args: z.output<Input>): number;
  /** For the built-in renderer: brief + brand + seed → one scene per variant. Pure and deterministic. */
  compose(args: z.output<Input>, seed: number): Scene[];
  /** For a prompt-based provider: brief + brand → one prompt, its target size and how many images. */
  prompt(args: z.output<Input>): PromptPlan;
  /** The brand kit the rubric scores the rendered scenes against. */
  brandKit(args: z.output<Input>): BrandKit;
}
