// create_product_shot: a branded product image with the product name, a tagline and the logo.
import { z } from 'zod';
import { brandRoles, readableOn, standsOut, textStack, type Roles } from '../src/compose/layout.js';
import { createPrng, variantSeed, type Prng } from '../src/compose/prng.js';
import { contrastRatio, parseHex } from '../src/color.js';
import {
  drawProduct,
  PRODUCT_KINDS,
  productKindFor,
  productSize,
  type ProductColors,
} from '../src/compose/products.js';
import type { Box, Hex, Scene, Shape } from '../src/compose/scene.js';
import { describeBrand, type PromptPlan } from '../src/compose/prompt.js';
import { commonFields, type GenerationTool } from '../src/tool.js';

export const ASPECT_SIZES = {
  '1:1': { width: 1080, height: 1080 },
  '4:3': { width: 1440, height: 1080 },
  '3:4': { width: 1080, height: 1440 },
  '16:9': { width: 1920, height: 1080 },
  '9:16': { width: 1080, height: 1920 },
} as const;
type Aspect = keyof typeof ASPECT_SIZES;

const side = z.number().int().min(256).max(2048).describe('Pixels, 256 to 2048.');

const input = z.object({
  brief: z
    .string()
    .trim()
    .min(1)
    .max(500)
    .describe(
      'What the image is for, in a sentence or two. Its first sentence is set as the tagline. Naming the ' +
        'product type (bottle, can, jar, box, phone, mug) picks that silhouette.',
    ),
  product_name: z.string().trim().min(1).max(80).describe('The product name, set as the headline.'),
  ...commonFields,
  size: z
    .union([
      z.enum(Object.keys(ASPECT_SIZES) as [Aspect, ...Aspect[]]),
      z.strictObject({ width: side, height: side }),
    ])
    .default('1:1')
    .describe(
      'An aspect ratio — "1:1" (1080×1080), "4:3" (1440×1080), "3:4" (1080×1440), "16:9" (1920×1080), ' +
        '"9:16" (1080×1920) — or an explicit {"width", "height"} in pixels, each 256 to 2048.',
    ),
  variants: z.number().int().min(1).max(4).default(1).describe('How many different images to make, 1 to 4.'),
  style: z
    .enum(['studio', 'lifestyle', 'minimal', 'bold'])
    .default('studio')
    .describe(
      'studio: the product on a light backdrop; lifestyle: on a table beside a plant; minimal: small and ' +
        'quiet with centred text; bold: on the brand\'s primary colour.',
    ),
});
type Args = z.output<typeof input>;

const name = 'product_shot';

const CREDITS_PER_VARIANT = 4;

const description =
  'Render brand-consistent product images (PNG): a flat product illustration in the brand colours, the ' +
  'product name as the headline, the brief\'s first sentence as the tagline, and the logo. Choose a style ' +
  '(studio, lifestyle, minimal, bold), an aspect ratio or exact size, and 1–4 variants. Rendering is built ' +
  'in, offline and deterministic: the same arguments and seed give byte-identical images. Each image is ' +
  'scored against the brand kit rubric (palette, text contrast, logo, banned phrases, size, safe margins) ' +
  'and the result lists each check with its evidence and a fix. ' +
  `Cost: ${CREDITS_PER_VARIANT} credits per variant.`;

/** The brief's first sentence, which is what a tagline is. */
export function tagline(brief: string): string {
  return brief.split(/(?<=[.!?])\s+/)[0]!.trim();
}

interface Stage {
  column: Box;
  stage: Box;
  /** Largest radius a circle at (cx, cy) may have without reaching into the text column. */
  room(cx: number, cy: number): number;
}

/** Text and product share the canvas: side by side when wide (the seed picks the side), else text on top. */
function split(W: number, H: number, m: number, rng: Prng): Stage {
  if (W > H * 1.15) {
    const textW = Math.round(W * 0.44);
    const left = rng.chance(0.5);
    const stage = { x: left ? textW : m, y: m, w: W - textW - m, h: H - 2 * m };
    return {
      column: { x: left ? m : W - textW + m, y: m, w: textW - 2 * m, h: H - 2 * m },
      stage,
      room: (cx) => (left ? cx - stage.x : stage.x + stage.w - cx),
    };
  }
  const textH = Math.round(Math.min(H * 0.38, W * 0.42));
  const stage = { x: m, y: textH + m, w: W - 2 * m, h: H - textH - 2 * m };
  return { column: { x: m, y: m, w: W - 2 * m, h: textH - m }, stage, room: (_cx, cy) => cy - stage.y };
}

interface Setting {
  background: Hex;
  /** The colour right behind the product, which its body must stand out from. */
  behind: Hex;
  shapes: Shape[];
  /** Top of the table the lifestyle style stands the product on. */
  table?: number;
}

/** What surrounds the product in each style. `product` is the box it will stand in. */
function setting(style: Args['style'], roles: Roles, product: Box, s: Stage, W: number, H: number, rng: Prng): Setting {
  const u = Math.min(W, H);
  const cx = product.x + product.w / 2;
  const cy = product.y + product.h / 2;
  const floor = product.y + product.h;
  const circle = (r: number, fill: Hex | 'none'): Shape => ({ kind: 'ellipse', cx, cy, rx: r, ry: r, fill });

  if (style === 'studio' || style === 'bold') {
    const behind = style === 'bold' ? roles.accent : roles.secondary;
    const margin = Math.round(u * 0.03);
    const r = Math.round(
      Math.min(Math.max(product.w, product.h) * rng.range(0.62, 0.72), s.room(cx, cy), cx - margin, W - cx - margin),
    );
    const shapes = [circle(r, behind)];
    const ring = Math.max(2, Math.round(u * 0.01));
    const rr = Math.round(Math.min(r * 1.15, s.room(cx, cy) - ring));
    if (style === 'bold' && rr > r + 2 * ring) {
      shapes.push({ ...circle(rr, 'none'), stroke: { color: roles.background, width: ring } });
    }
    return { background: style === 'bold' ? roles.primary : roles.background, behind, shapes };
  }

  if (style === 'lifestyle') {
    // A table from the product's feet down, and a potted plant beside the product.
    const table = Math.round(floor - product.h * 0.04);
    const potW = Math.round(product.h * 0.3);
    const potH = Math.round(product.h * 0.32);
    const gap = (s.stage.w * 0.5 - product.w / 2) * 0.45;
    const potX = Math.round(Math.min(product.x + product.w + gap, s.stage.x + s.stage.w - potW));
    const leaf = Math.round(potW * 0.45);
    const potTop = table - potH;
    const leaves = ([[-0.6, -1.0], [0.6, -1.15], [0, -1.8]] as const).map(
      ([dx, dy]): Shape => ({
        kind: 'ellipse',
        cx: potX + potW / 2 + dx * leaf,
        cy: potTop + dy * leaf,
        rx: leaf * 0.62,
        ry: leaf,
        fill: roles.secondary,
      }),
    );
    return {
      background: roles.background,
      behind: roles.background,
      table,
      shapes: [
        { kind: 'rect', x: 0, y: table, w: W, h: H - table, fill: roles.accent },
        ...leaves,
        { kind: 'rect', x: potX, y: potTop, w: potW, h: potH, r: Math.round(potW * 0.12), fill: roles.primary },
      ],
    };
  }

  // minimal: the product on a thin floor line.
  const lineW = Math.round(Math.min(s.stage.w * 0.6, product.w * 3));
  const line: Shape = {
    kind: 'rect',
    x: Math.round(cx - lineW / 2),
    y: floor,
    w: lineW,
    h: Math.max(2, Math.round(u * 0.004)),
    fill: roles.text,
  };
  return { background: roles.background, behind: roles.background, shapes: [line] };
}

/** The product body in the primary colour unless that would vanish into what is behind it. */
function productColors(roles: Roles, behind: Hex): ProductColors {
  const candidates = [roles.primary, roles.text, roles.secondary, roles.background].filter((c) => c !== behind);
  const body =
    candidates.find((c) => contrastRatio(parseHex(c), parseHex(behind)) >= 2) ?? standsOut(behind, candidates);
  return {
    body,
    trim: roles.accent !== body && roles.accent !== behind ? roles.accent : roles.secondary,
    label: body === roles.background ? roles.secondary : roles.background,
  };
}

function composeOne(args: Args, seed: number): Scene {
  const { width: W, height: H } = typeof args.size === 'string' ? ASPECT_SIZES[args.size] : args.size;
  const rng = createPrng(seed);
  const brand = args.brand_kit;
  const roles = brandRoles(brand);
  const u = Math.min(W, H);
  const m = Math.round(u * 0.06);
  const s = split(W, H, m, rng);
  const { stage } = s;

  // The product, sized for the style and centred in the stage, nudged sideways by the seed.
  const kind = productKindFor(args.brief) ?? rng.pick(PRODUCT_KINDS);
  const scale = { studio: 0.7, lifestyle: 0.6, minimal: 0.45, bold: 0.7 }[args.style];
  const maxW = stage.w * (args.style === 'lifestyle' ? 0.5 : 0.55);
  const size = productSize(kind, maxW, Math.min(stage.w, stage.h) * scale);
  const nudge = args.style === 'lifestyle' ? -1 : rng.range(-1, 1);
  const cx = Math.round(stage.x + stage.w / 2 + nudge * stage.w * 0.08);
  const floor = Math.round(stage.y + stage.h / 2 + size.h / 2);
  const product: Box = { x: cx - size.w / 2, y: floor - size.h, w: size.w, h: size.h };

  const { background, behind, shapes, table } = setting(args.style, roles, product, s, W, H, rng);
  // Side-by-side text must end above the table, or it would sit on two colours.
  const column = table === undefined ? s.column : { ...s.column, h: Math.min(s.column.h, table - m - s.column.y) };
  const shadow: Shape = {
    kind: 'ellipse',
    cx,
    cy: floor,
    rx: Math.round(size.w * 0.55),
    ry: Math.max(3, Math.round(size.h * 0.035)),
    fill: roles.text,
    opacity: 0.18,
  };
  const textColor = readableOn(background, brand);
  const text = textStack({
    column,
    unit: u,
    logoText: brand.logo_text,
    headline: args.product_name,
    body: tagline(args.brief),
    headlineMax: Math.round(u * (args.style === 'minimal' ? 0.07 : 0.09)),
    bodyMax: Math.round(u * 0.034),
    color: textColor,
    logoColor: textColor,
    markColor: roles.accent,
    ruleColor: roles.accent,
    align: args.style === 'minimal' && W <= H * 1.15 ? 'middle' : 'start',
    valign: 'center',
  });

  return {
    width: W,
    height: H,
    target: { width: W, height: H, label: typeof args.size === 'string' ? `size "${args.size}"` : `size ${W}×${H}` },
    background,
    safeMargin: m,
    elements: [...shapes, shadow, ...drawProduct(kind, product, productColors(roles, behind)), ...text],
  };
}

function compose(args: Args, seed: number): Scene[] {
  return Array.from({ length: args.variants }, (_, i) => composeOne(args, variantSeed(seed, i)));
}

const STYLE_WORDS: Record<Args['style'], string> = {
  studio: 'a studio product photograph on a light, seamless backdrop',
  lifestyle: 'a lifestyle photograph: the product on a table beside a plant, soft daylight',
  minimal: 'a minimal composition: the product small, lots of quiet space, centred text',
  bold: "a bold graphic image: the product on a solid field of the brand's primary colour",
};

function prompt(args: Args): PromptPlan {
  const { width, height } = typeof args.size === 'string' ? ASPECT_SIZES[args.size] : args.size;
  return {
    prompt:
      `${STYLE_WORDS[args.style]} of ${args.product_name}. ${args.brief} ` +
      `Set "${args.product_name}" as the headline and "${tagline(args.brief)}" as the tagline. ${describeBrand(args.brand_kit)}`,
    target: { width, height, label: typeof args.size === 'string' ? `size "${args.size}"` : `size ${width}×${height}` },
    count: args.variants,
  };
}

const productShot: GenerationTool<typeof input> = {
  name,
  title: 'Product shot',
  description,
  input,
  cost: (args) => CREDITS_PER_VARIANT * args.variants,
  compose,
  prompt,
  brandKit: (args) => args.brand_kit,
};
export default productShot;
