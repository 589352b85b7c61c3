// The brand kit: what a generated image must look like, and what the rubric scores it against.
import { z } from 'zod';

/** The rubric's checks, in the order it reports them. */
export const CHECK_IDS = [
  'size',
  'safe_margin',
  'logo_present',
  'banned_phrases',
  'text_contrast',
  'text_fit',
  'palette_coverage',
] as const;
export type CheckId = (typeof CHECK_IDS)[number];

export const COLOR_ROLES = ['primary', 'secondary', 'accent', 'background', 'text'] as const;
export type ColorRole = (typeof COLOR_ROLES)[number];

export const hexColorSchema = z
  .string()
  .regex(/^#[0-9A-Fa-f]{6}$/, 'must be a hex colour like #1F3A5F: "#" then six hex digits')
  .describe('A colour as "#RRGGBB", e.g. "#1F3A5F".');

const weight = z.number().min(0).max(1);

const rubricWeightsSchema = z
  .strictObject(
    Object.fromEntries(CHECK_IDS.map((id) => [id, weight.optional()])) as Record<CheckId, z.ZodOptional<typeof weight>>,
  )
  .describe(
    `Optional weight 0..1 per rubric check (${CHECK_IDS.join(', ')}); a missing check weighs 1. ` +
      'Weight 0 means the check is not tested. The score is the weighted share of tested checks that passed.',
  );

export const brandKitSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(80).describe('Brand name, e.g. "Lumen Goods".'),
    palette: z
      .array(
        z.strictObject({
          hex: hexColorSchema,
          role: z.enum(COLOR_ROLES).describe('What the colour is for: primary, secondary, accent, background or text.'),
        }),
      )
      .min(1, 'must have at least one colour')
      .max(8, 'must have at most 8 colours')
      .describe(
        'The brand colours, 1 to 8. Give a "background" and a "text" colour for the best results; missing roles ' +
          'are derived from the other colours. The rubric measures how much of the image uses these colours.',
      ),
    logo_text: z
      .string()
      .trim()
      .min(1)
      .max(40)
      .describe('The wordmark drawn as the logo, e.g. "LUMEN". The rubric checks it is present and legible.'),
    tone_words: z
      .array(z.string().trim().min(1).max(40))
      .max(12)
      .default([])
      .describe('Words describing the brand voice, e.g. ["clear", "warm"]. Informational.'),
    banned_phrases: z
      .array(z.string().trim().min(1).max(80))
      .max(50)
      .default([])
      .describe('Phrases that must never appear in the image text (matched case-insensitively).'),
    rubric_weights: rubricWeightsSchema.optional(),
  })
  .describe('Brand kit: colours, logo wordmark and wording rules. Omit it to use the built-in default brand.');

export type BrandKit = z.output<typeof brandKitSchema>;

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/**
 * Used when the caller gives no brand kit; every built-in tool passes its own rubric with it. Frozen,
 * so every call can share it (no copy per request) and no run can change it for another.
 */
export const DEFAULT_BRAND_KIT: BrandKit = deepFreeze({
  name: 'Lumen Goods',
  palette: [
    { hex: '#1F3A5F', role: 'primary' },
    { hex: '#7FB7A4', role: 'secondary' },
    { hex: '#F2A541', role: 'accent' },
    { hex: '#F7F4EE', role: 'background' },
    { hex: '#16202C', role: 'text' },
  ],
  logo_text: 'LUMEN',
  tone_words: ['clear', 'warm', 'confident'],
  banned_phrases: ['best in the world', 'guaranteed results', 'risk-free', 'cheapest'],
});

/** The weight of one check: 1 unless the kit says otherwise. */
export function checkWeight(brand: BrandKit, id: CheckId): number {
  return brand.rubric_weights?.[id] ?? 1;
}
