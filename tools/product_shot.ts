// create_product_shot: a branded product image with the product name, a tagline and the logo.
import { z } from 'zod';
import { brandKitSchema, DEFAULT_BRAND_KIT } from '../src/brand.js';
import { brandRoles, readableOn, standsOut, textStack } from '../src/providers/layout.js';
import { createPrng, MAX_SEED, variantSeed } from '../src/providers/prng.js';
import { contrastRatio, parseHex } from '../src/color.js';
import {
  drawProduct,
  PRODUCT_KINDS,
  productKindFor,
  productSize,
  type ProductColors,
} from '../src/providers/products.js';
import type { Box, Scene } from '../src/providers/scene.js';
import type { GenerationTool } from '../src/tool.js';

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
  brand_kit: brandKitSchema.default(DEFAULT_BRAND_KIT),
  seed: z
    .number()
    .int()
    .min(0)
    .max(MAX_SEED)
    .optional()
    .describe(
      'Integer 0..4294967295 that picks layout and decoration. Omit it and one is derived from the ' +
        'arguments; the result always echoes the seed used. Same arguments + seed = the same images.',
    ),
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
  `Cost: ${CREDITS_PER_VARIANT} credits per variant, charged once when the run reaches done; replays, ` +
  'failures and cancellations are free. ' +
  'The call answers at once with a run_id; while the run is still going, poll with poll_run and that ' +
  'run_id — do not create again. ' +
  'Make one new key (a UUID) per logical request; when retrying after a timeout or an error, send the SAME ' +
  'key — a new key starts a new, billed run.';

/** The brief's first sentence, which is what a tagline is. */
export function tagline(brief: string): string {
  return brief.split(/(?<=[.!?])\s+/)[0]!.trim();
}

function composeOne(args: Args, seed: number): Scene {
  const { width: W, height: H } = typeof args.size === 'string' ? ASPECT_SIZES[args.size] : args.size;
  const rng = createPrng(seed);
  const brand = args.brand_kit;
  const roles = brandRoles(brand);
  const u = Math.min(W, H);
  const m = Math.round(u * 0.06);
  const landscape = W > H * 1.15;
  const style = args.style;

  // Text and product share the canvas: side by side when wide (the seed picks the side), else text on top.
  let column: Box;
  let stage: Box;
  let textSide: 'top' | 'left' | 'right';
  if (landscape) {
    const textW = Math.round(W * 0.44);
    const left = rng.chance(0.5);
    column = { x: left ? m : W - textW + m, y: m, w: textW - 2 * m, h: H - 2 * m };
    stage = { x: left ? textW : m, y: m, w: W - textW - m, h: H - 2 * m };
    textSide = left ? 'left' : 'right';
  } else {
    const textH = Math.round(Math.min(H * 0.38, W * 0.42));
    column = { x: m, y: m, w: W - 2 * m, h: textH - m };
    stage = { x: m, y: textH + m, w: W - 2 * m, h: H - textH - 2 * m };
    textSide = 'top';
  }
  /** Largest radius a circle at (cx, cy) may have without reaching into the text side. */
  const room = (cx: number, cy: number) =>
    ({ top: cy - stage.y, left: cx - stage.x, right: stage.x + stage.w - cx })[textSide];

  // The product, sized for the style and centred in the stage, nudged sideways by the seed.
  const kind = productKindFor(args.brief) ?? rng.pick(PRODUCT_KINDS);
  const scale = { studio: 0.7, lifestyle: 0.6, minimal: 0.45, bold: 0.7 }[style];
  const size = productSize(kind, stage.w * (style === 'lifestyle' ? 0.5 : 0.55), stage.h * scale);
  const cx = Math.round(stage.x + stage.w / 2 + (style === 'lifestyle' ? -1 : rng.range(-1, 1)) * stage.w * 0.08);
  const cy = Math.round(stage.y + stage.h / 2);
  const floor = Math.round(cy + size.h / 2);
  const slot: Box = { x: cx - size.w / 2, y: floor - size.h, w: size.w, h: size.h };

  const elements: Scene['elements'] = [];
  let background = roles.background;
  let behind = roles.background;
  if (style === 'studio' || style === 'bold') {
    if (style === 'bold') background = roles.primary;
    behind = style === 'bold' ? roles.accent : roles.secondary;
    const r = Math.round(
      Math.min(Math.max(size.w, size.h) * rng.range(0.62, 0.72), room(cx, cy), cx - m / 2, W - cx - m / 2),
    );
    elements.push({ kind: 'ellipse', cx, cy, rx: r, ry: r, fill: behind });
    if (style === 'bold') {
      const width = Math.max(2, Math.round(u * 0.01));
      const rr = Math.round(Math.min(r * 1.15, room(cx, cy) - width));
      if (rr > r + 2 * width) {
        elements.push({ kind: 'ellipse', cx, cy, rx: rr, ry: rr, fill: 'none', stroke: { color: roles.background, width } });
      }
    }
  } else if (style === 'lifestyle') {
    // A table from the product's feet down, and a potted plant on the far side of it.
    const table = floor - Math.round(size.h * 0.04);
    elements.push({ kind: 'rect', x: 0, y: table, w: W, h: H - table, fill: roles.accent });
    if (landscape) column.h = Math.min(column.h, table - m - column.y);
    const potW = Math.round(size.h * 0.3);
    const potH = Math.round(size.h * 0.32);
    const potX = Math.round(Math.min(cx + size.w / 2 + (stage.w * 0.5 - size.w / 2) * 0.45, stage.x + stage.w - potW));
    const leaf = Math.round(potW * 0.45);
    const top = table - potH;
    for (const [dx, dy] of [[-0.6, -1.0], [0.6, -1.15], [0, -1.8]] as const) {
      elements.push({ kind: 'ellipse', cx: potX + potW / 2 + dx * leaf, cy: top + dy * leaf, rx: leaf * 0.62, ry: leaf, fill: roles.secondary });
    }
    elements.push({ kind: 'rect', x: potX, y: top, w: potW, h: potH, r: Math.round(potW * 0.12), fill: roles.primary });
  } else {
    const lineW = Math.round(Math.min(stage.w * 0.6, size.w * 3));
    const lineH = Math.max(2, Math.round(u * 0.004));
    elements.push({ kind: 'rect', x: Math.round(cx - lineW / 2), y: floor, w: lineW, h: lineH, fill: roles.text });
  }

  // A soft contact shadow grounds the product.
  elements.push({
    kind: 'ellipse',
    cx,
    cy: floor,
    rx: Math.round(size.w * 0.55),
    ry: Math.max(3, Math.round(size.h * 0.035)),
    fill: roles.text,
    opacity: 0.18,
  });
  // The product body in the brand's primary colour unless that would vanish into what is behind it.
  const candidates = [roles.primary, roles.text, roles.secondary, roles.background].filter((c) => c !== behind);
  const body = candidates.find((c) => contrastRatio(parseHex(c), parseHex(behind)) >= 2) ?? standsOut(behind, candidates);
  const colors: ProductColors = {
    body,
    trim: roles.accent !== body && roles.accent !== behind ? roles.accent : roles.secondary,
    label: body === roles.background ? roles.secondary : roles.background,
  };
  elements.push(...drawProduct(kind, slot, colors));

  const textColor = readableOn(background, brand);
  elements.push(
    ...textStack({
      column,
      unit: u,
      logoText: brand.logo_text,
      headline: args.product_name,
      body: tagline(args.brief),
      headlineMax: Math.round(u * (style === 'minimal' ? 0.07 : 0.09)),
      bodyMax: Math.round(u * 0.034),
      color: textColor,
      logoColor: textColor,
      markColor: roles.accent,
      ruleColor: roles.accent,
      align: style === 'minimal' && !landscape ? 'middle' : 'start',
      valign: 'center',
    }),
  );

  return {
    width: W,
    height: H,
    target: { width: W, height: H, label: typeof args.size === 'string' ? `size "${args.size}"` : `size ${W}×${H}` },
    background,
    safeMargin: m,
    elements,
  };
}

function compose(args: Args, seed: number): Scene[] {
  return Array.from({ length: args.variants }, (_, i) => composeOne(args, variantSeed(seed, i)));
}

const productShot: GenerationTool<typeof input> = {
  name,
  title: 'Product shot',
  description,
  input,
  cost: (args) => CREDITS_PER_VARIANT * args.variants,
  compose,
  brandKit: (args) => args.brand_kit,
};
export default productShot;
