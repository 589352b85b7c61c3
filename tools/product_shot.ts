// create_product_shot: a branded product image with the product name, a tagline and the logo.
import { z } from 'zod';
import { taglineFrom } from '../src/compose/copy.js';
import { brandRoles, readableOn, standsOut, textStack, type Roles } from '../src/compose/layout.js';
import { variantSeed } from '../src/compose/prng.js';
import { createPrng, type Prng } from '../src/prng.js';
import { contrastRatio, parseHex } from '../src/color.js';
import {
  drawProduct,
  PRODUCT_KINDS,
  productKindFor,
  productSize,
  type ProductColors,
  type ProductKind,
} from '../src/compose/products.js';
import type { Box, Hex, Scene, SceneElement, Shape } from '../src/compose/scene.js';
import { describeBrand, type PromptPlan } from '../src/compose/prompt.js';
import { commonFields, type ImageTool } from '../src/tool.js';

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
      'What the image is for, in a sentence or two; art direction is welcome. Unless `tagline` is given, a ' +
        'short line about the product is taken from it (its first clause, without the art direction). Naming ' +
        'the product type (bottle, can, jar, box, phone, mug) picks that silhouette.',
    ),
  product_name: z.string().trim().min(1).max(80).describe('The product name, set as the headline.'),
  tagline: z
    .string()
    .trim()
    .max(90)
    .optional()
    .describe(
      'The line set under the product name, e.g. "Cold for 24 hours." Omit it to take a short line from the ' +
        'brief; give "" for no tagline.',
    ),
  ...commonFields,
  size: z
    .union([z.enum(Object.keys(ASPECT_SIZES) as [Aspect, ...Aspect[]]), z.strictObject({ width: side, height: side })])
    .default('1:1')
    .describe(
      'An aspect ratio — "1:1" (1080×1080), "4:3" (1440×1080), "3:4" (1080×1440), "16:9" (1920×1080), ' +
        '"9:16" (1080×1920) — or an explicit {"width", "height"} in pixels, each 256 to 2048.',
    ),
  variants: z
    .number()
    .int()
    .min(1)
    .max(4)
    .default(1)
    .describe(
      'How many images to make, 1 to 4: each a different composition (layout, framing, angle, colour emphasis).',
    ),
  style: z
    .enum(['studio', 'lifestyle', 'minimal', 'bold'])
    .default('studio')
    .describe(
      'studio: the product on a light backdrop; lifestyle: on a table beside a plant; minimal: small and ' +
        "quiet with centred text; bold: on the brand's primary colour.",
    ),
});
type Args = z.output<typeof input>;

const name = 'product_shot';

const CREDITS_PER_VARIANT = 4;

const description =
  'Render brand-consistent product images (PNG): a flat product illustration in the brand colours, the ' +
  'product name as the headline, a short tagline (given, or taken from the brief) and the logo. Choose a style ' +
  '(studio, lifestyle, minimal, bold), an aspect ratio or exact size, and 1–4 variants, each composed ' +
  'differently. Rendering is built in, offline and deterministic: the same arguments and seed give ' +
  'byte-identical images. Each image is scored against the brand kit rubric (palette distance, text ' +
  'contrast, text fit, logo, banned phrases, size, safe margins) and the result lists each check with its ' +
  'evidence and a fix. ' +
  `Cost: ${CREDITS_PER_VARIANT} credits per variant.`;

/** The line set under the product name: the caller's own, or a short one taken from the brief. */
export function tagline(args: Pick<Args, 'brief' | 'tagline'>): string {
  return args.tagline ?? taglineFrom(args.brief);
}

type Layout = 'stack' | 'flip' | 'side' | 'closeup';

/** One variant's composition: where the text goes, how the product is framed, and which colour leads. */
interface Plan {
  layout: Layout;
  /** side and wide close-up: the text takes the left side. */
  textLeft: boolean;
  align: 'start' | 'middle';
  /** The palette colour this variant puts forward (the prop, the table, the plinth). */
  emphasis: Hex;
  prop: 'disc' | 'arch' | 'tile';
  /** The product's height as a share of the stage's short side (of the stage height in a closeup). */
  scale: number;
  /** Degrees; only a floating product (studio, bold) is set at an angle. */
  tilt: number;
  /** -1..1: how far off centre the product stands. */
  nudge: number;
}

/** cos and sin of the tilts a composer may use, written out so no composer does trigonometry. */
const TILTS: Record<number, { cos: number; sin: number }> = {
  0: { cos: 1, sin: 0 },
  6: { cos: 0.9945219, sin: 0.1045285 },
  10: { cos: 0.9848078, sin: 0.1736482 },
};

function shuffled<T>(items: readonly T[], rng: Prng): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The compositions a style can take on this canvas: text beside, above or below, or a cropped close-up. */
function layoutsFor(style: Args['style'], W: number, H: number): Layout[] {
  const floating = style === 'studio' || style === 'bold';
  if (W > H * 1.15) return floating ? ['side', 'closeup'] : ['side'];
  return ['stack', 'flip', ...(W >= H * 0.87 ? (['side'] as const) : []), ...(floating ? (['closeup'] as const) : [])];
}

/** The colours a style may put forward, most characteristic first. */
function emphasesFor(style: Args['style'], roles: Roles): Hex[] {
  const options = {
    studio: [roles.secondary, roles.accent, roles.primary],
    bold: [roles.accent, roles.secondary, roles.background],
    lifestyle: [roles.accent, roles.secondary, roles.primary],
    minimal: [roles.text, roles.primary, roles.accent],
  }[style];
  const ground = style === 'bold' ? roles.primary : roles.background;
  const usable = [...new Set(options)].filter((c) => c !== ground);
  return usable.length > 0 ? usable : [roles.text];
}

/**
 * The plan of each variant. The request's seed orders the layouts and the colours once, and variant i
 * takes the i-th of each, so the variants of one request always differ in composition; each variant's
 * own seed sets the rest (scale, angle, prop). Variant 0 depends on the seed alone, so a single image
 * reproduces from the echoed seed.
 */
function plans(args: Args, roles: Roles, W: number, H: number, seed: number): Plan[] {
  const order = createPrng(seed ^ 0x5bd1e995);
  const layouts = shuffled(layoutsFor(args.style, W, H), order);
  const emphases = shuffled(emphasesFor(args.style, roles), order);
  // The side the text takes alternates, so two side-by-side variants are not one image mirrored.
  const leftFirst = order.chance(0.5);
  return Array.from({ length: args.variants }, (_, i) => {
    const rng = createPrng(variantSeed(seed, i));
    const layout = layouts[i % layouts.length]!;
    const textLeft = (i % 2 === 0) === leftFirst;
    const floating = args.style === 'studio' || args.style === 'bold';
    const scale =
      layout === 'closeup'
        ? rng.range(1.1, 1.3)
        : {
            studio: rng.range(0.6, 0.78),
            bold: rng.range(0.6, 0.78),
            lifestyle: rng.range(0.5, 0.66),
            minimal: rng.range(0.36, 0.48),
          }[args.style];
    const tilt = floating ? rng.pick([0, 6, -6, 10, -10]) : 0;
    const centred = args.style === 'minimal' || (floating && rng.chance(0.4));
    return {
      layout,
      textLeft,
      align: centred && (layout === 'stack' || layout === 'flip') ? 'middle' : 'start',
      emphasis: emphases[(i + Math.floor(i / layouts.length)) % emphases.length]!,
      prop: rng.pick(['disc', 'arch', 'tile'] as const),
      scale,
      tilt,
      nudge: layout === 'closeup' ? rng.pick([-1, 1]) : rng.range(-1, 1),
    };
  });
}

interface Frame {
  column: Box;
  stage: Box;
  /** Largest distance from (cx, cy) towards the text column that stays clear of it. */
  room(cx: number, cy: number): number;
}

/** Splits the canvas between the text column and the stage the product stands on. */
function frame(plan: Plan, W: number, H: number, m: number): Frame {
  const wide = W > H * 1.15;
  if (plan.layout === 'side' || (plan.layout === 'closeup' && wide)) {
    const textW = Math.round(W * (wide ? 0.44 : 0.46));
    const left = plan.textLeft;
    const bleed = plan.layout === 'closeup';
    const stage = { x: left ? textW : bleed ? 0 : m, y: m, w: W - textW - (bleed ? 0 : m), h: H - m - (bleed ? 0 : m) };
    return {
      column: { x: left ? m : W - textW + m, y: m, w: textW - 2 * m, h: H - 2 * m },
      stage,
      room: (cx) => (left ? cx - stage.x : stage.x + stage.w - cx),
    };
  }
  const textH = Math.round(Math.min(H * 0.38, W * 0.42));
  if (plan.layout === 'flip') {
    const stage = { x: m, y: m, w: W - 2 * m, h: H - textH - 2 * m };
    return {
      column: { x: m, y: H - textH, w: W - 2 * m, h: textH - m },
      stage,
      room: (_cx, cy) => stage.y + stage.h - cy,
    };
  }
  // stack, and the close-up whose stage runs off the bottom edge.
  const bleed = plan.layout === 'closeup';
  const stage = { x: bleed ? 0 : m, y: textH + m, w: bleed ? W : W - 2 * m, h: H - textH - m - (bleed ? 0 : m) };
  return { column: { x: m, y: m, w: W - 2 * m, h: textH - m }, stage, room: (_cx, cy) => cy - stage.y };
}

/** Where the product stands, its size and angle. A close-up is larger than its stage: the edge crops it. */
function placeProduct(kind: ProductKind, plan: Plan, style: Args['style'], f: Frame): { box: Box; tilt: number } {
  const { stage } = f;
  const { cos, sin } = TILTS[Math.abs(plan.tilt)]!;
  const closeup = plan.layout === 'closeup';
  const maxW = stage.w * (closeup ? 0.62 : style === 'lifestyle' ? 0.5 : 0.55);
  const maxH = closeup ? stage.h * plan.scale : Math.min(stage.w, stage.h) * plan.scale;
  const upright = productSize(kind, maxW, maxH);
  // Turned, the product's bounds grow; shrink it until they fit where the upright one did.
  const k = Math.min(1, maxW / (upright.w * cos + upright.h * sin), maxH / (upright.w * sin + upright.h * cos));
  const size = { w: upright.w * k, h: upright.h * k };
  const cx = Math.round(
    stage.x + stage.w / 2 + plan.nudge * stage.w * (closeup ? 0.12 : style === 'lifestyle' ? 0 : 0.08),
  );
  const top = closeup ? Math.round(stage.y + stage.h * 0.1) : Math.round(stage.y + stage.h / 2 - size.h / 2);
  const x = style === 'lifestyle' ? Math.round(stage.x + stage.w * 0.42 - size.w / 2) : cx - size.w / 2;
  return { box: { x, y: top, w: size.w, h: size.h }, tilt: plan.tilt };
}

interface Setting {
  background: Hex;
  /** What the text column sits on. */
  surface: Hex;
  /** The colour right behind the product, which its body must stand out from. */
  behind: Hex;
  shapes: Shape[];
  /** Top of the table the lifestyle style stands the product on. */
  table?: number;
}

/** What surrounds the product in each style, in the variant's emphasis colour. */
function setting(
  style: Args['style'],
  plan: Plan,
  roles: Roles,
  product: Box,
  f: Frame,
  W: number,
  H: number,
): Setting {
  const u = Math.min(W, H);
  const cx = product.x + product.w / 2;
  const cy = product.y + product.h / 2;
  const floor = product.y + product.h;
  const margin = Math.round(u * 0.03);

  if (style === 'studio' || style === 'bold') {
    const background = style === 'bold' ? roles.primary : roles.background;
    const behind = plan.emphasis;
    const closeup = plan.layout === 'closeup';
    // Props stay clear of the text column, and (unless the close-up crops them) of the canvas edge.
    const clearX = closeup ? Infinity : Math.min(cx - margin, W - cx - margin);
    const reach = Math.min(f.room(cx, cy), clearX);
    const span = Math.max(product.w, product.h);
    const shapes: Shape[] = [];
    if (plan.prop === 'disc' || closeup) {
      const r = Math.round(Math.min(span * (closeup ? 0.62 : 0.68), reach));
      shapes.push({ kind: 'ellipse', cx, cy, rx: r, ry: r, fill: behind });
      const ring = Math.max(2, Math.round(u * 0.01));
      const rr = Math.round(Math.min(r * 1.15, reach - ring));
      if (style === 'bold' && rr > r + 2 * ring) {
        shapes.push({
          kind: 'ellipse',
          cx,
          cy,
          rx: rr,
          ry: rr,
          fill: 'none',
          stroke: { color: roles.background, width: ring },
        });
      }
    } else if (plan.prop === 'arch') {
      // A doorway shape: round on top, square at the floor.
      const w = Math.round(Math.min(product.w * 1.9, span * 0.95, 2 * reach));
      const top = Math.round(Math.max(cy - reach, product.y - product.h * 0.22));
      const bottom = Math.round(Math.min(floor + product.h * 0.06, cy + reach));
      const x = Math.round(cx - w / 2);
      shapes.push({ kind: 'rect', x, y: top, w, h: bottom - top, r: Math.round(w / 2), fill: behind });
      shapes.push({
        kind: 'rect',
        x,
        y: Math.round((top + bottom) / 2),
        w,
        h: Math.round(bottom - (top + bottom) / 2),
        fill: behind,
      });
    } else {
      const side = Math.round(Math.min(span * 1.2, 2 * reach));
      shapes.push({
        kind: 'rect',
        x: Math.round(cx - side / 2),
        y: Math.round(cy - side / 2),
        w: side,
        h: side,
        r: Math.round(side * 0.1),
        fill: behind,
      });
    }
    return { background, surface: background, behind, shapes };
  }

  if (style === 'lifestyle') {
    // A table from the product's feet down, and a potted plant on the open side of the product.
    const tableColor = plan.emphasis;
    const table = Math.round(floor - product.h * 0.04);
    const potW = Math.round(product.h * 0.3);
    const potH = Math.round(product.h * 0.32);
    const { stage } = f;
    const gap = Math.max(product.w * 0.35, (stage.w - product.w) * 0.12);
    const potX = Math.round(Math.min(product.x + product.w + gap, stage.x + stage.w - potW));
    const leaf = Math.round(potW * 0.45);
    const potTop = table - potH;
    const leafColor = tableColor === roles.secondary ? roles.primary : roles.secondary;
    const potColor = tableColor === roles.primary ? roles.accent : roles.primary;
    const leaves = (
      [
        [-0.6, -1.0],
        [0.6, -1.15],
        [0, -1.8],
      ] as const
    ).map(([dx, dy]): Shape => ({
      kind: 'ellipse',
      cx: potX + potW / 2 + dx * leaf,
      cy: potTop + dy * leaf,
      rx: leaf * 0.62,
      ry: leaf,
      fill: leafColor,
    }));
    return {
      background: roles.background,
      surface: plan.layout === 'flip' ? tableColor : roles.background,
      behind: roles.background,
      table,
      shapes: [
        { kind: 'rect', x: 0, y: table, w: W, h: H - table, fill: tableColor },
        ...leaves,
        { kind: 'rect', x: potX, y: potTop, w: potW, h: potH, r: Math.round(potW * 0.12), fill: potColor },
      ],
    };
  }

  // minimal: the product on a thin floor line, or on a low plinth in the emphasis colour.
  const plinth = plan.prop !== 'disc';
  const lineW = Math.round(Math.min(f.stage.w * 0.6, product.w * (plinth ? 1.5 : 3)));
  const h = plinth ? Math.round(product.h * 0.14) : Math.max(2, Math.round(u * 0.004));
  const base: Shape = { kind: 'rect', x: Math.round(cx - lineW / 2), y: floor, w: lineW, h, fill: plan.emphasis };
  return { background: roles.background, surface: roles.background, behind: roles.background, shapes: [base] };
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

function composeOne(args: Args, plan: Plan, kind: ProductKind): Scene {
  const { width: W, height: H } = typeof args.size === 'string' ? ASPECT_SIZES[args.size] : args.size;
  const brand = args.brand_kit;
  const roles = brandRoles(brand);
  const u = Math.min(W, H);
  const m = Math.round(u * 0.06);
  const f = frame(plan, W, H, m);
  const { box: product, tilt } = placeProduct(kind, plan, args.style, f);
  const { background, surface, behind, shapes, table } = setting(args.style, plan, roles, product, f, W, H);
  const floor = product.y + product.h;
  const cx = product.x + product.w / 2;

  // Text beside a lifestyle product must end above the table, or it would sit on two colours.
  const column =
    table === undefined || plan.layout === 'flip'
      ? f.column
      : { ...f.column, h: Math.min(f.column.h, table - m - f.column.y) };
  const drawn = drawProduct(kind, product, productColors(roles, behind));
  const body: SceneElement[] =
    tilt === 0
      ? drawn
      : [{ kind: 'group', rotate: tilt, cx: Math.round(cx), cy: Math.round(product.y + product.h / 2), shapes: drawn }];
  // A floating, turned or cropped product casts no floor shadow.
  const shadow: Shape[] =
    tilt !== 0 || plan.layout === 'closeup'
      ? []
      : [
          {
            kind: 'ellipse',
            cx,
            cy: floor,
            rx: Math.round(product.w * 0.55),
            ry: Math.max(3, Math.round(product.h * 0.035)),
            fill: roles.text,
            opacity: 0.18,
          },
        ];
  const textColor = readableOn(surface, brand);
  const mark =
    contrastRatio(parseHex(roles.accent), parseHex(surface)) >= 1.5
      ? roles.accent
      : standsOut(surface, [roles.primary, roles.secondary, roles.accent]);
  const line = tagline(args);
  const text = textStack({
    column,
    unit: u,
    logoText: brand.logo_text,
    headline: args.product_name,
    body: line,
    headlineMax: Math.round(u * (args.style === 'minimal' ? 0.07 : 0.09)),
    bodyMax: Math.round(u * 0.038),
    color: textColor,
    logoColor: textColor,
    markColor: mark,
    ruleColor: mark,
    align: plan.align,
    valign: 'center',
  });

  return {
    width: W,
    height: H,
    target: { width: W, height: H, label: typeof args.size === 'string' ? `size "${args.size}"` : `size ${W}×${H}` },
    background,
    safeMargin: m,
    elements: [...shapes, ...shadow, ...body, ...text],
    copy: [{ id: 'headline', text: args.product_name }, ...(line === '' ? [] : [{ id: 'body', text: line }])],
  };
}

function compose(args: Args, seed: number): Scene[] {
  const { width: W, height: H } = typeof args.size === 'string' ? ASPECT_SIZES[args.size] : args.size;
  const roles = brandRoles(args.brand_kit);
  // One product per request: its variants show the same thing composed differently.
  const kind = productKindFor(args.brief) ?? createPrng(seed).pick(PRODUCT_KINDS);
  return plans(args, roles, W, H, seed).map((plan) => composeOne(args, plan, kind));
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
      `Set "${args.product_name}" as the headline${tagline(args) === '' ? '' : ` and "${tagline(args)}" as the tagline`}. ${describeBrand(args.brand_kit)}`,
    target: { width, height, label: typeof args.size === 'string' ? `size "${args.size}"` : `size ${width}×${height}` },
    count: args.variants,
  };
}

const productShot: ImageTool<typeof input> = {
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
