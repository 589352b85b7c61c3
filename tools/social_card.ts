// create_social_card: a branded text card sized for a social channel.
import { z } from 'zod';
import { brandRoles, readableOn, textStack, type Roles } from '../src/compose/layout.js';
import { createPrng, type Prng } from '../src/prng.js';
import type { Box, Hex, Scene, Shape } from '../src/compose/scene.js';
import { describeBrand, type PromptPlan } from '../src/compose/prompt.js';
import { commonFields, type ImageTool } from '../src/tool.js';

export const CHANNELS = {
  square: { width: 1080, height: 1080 },
  landscape: { width: 1200, height: 628 },
  story: { width: 1080, height: 1920 },
} as const;

const input = z.object({
  headline: z.string().trim().min(1).max(140).describe('The headline, set large and bold; wrapped and sized to fit.'),
  body: z
    .string()
    .trim()
    .max(320)
    .default('')
    .describe('Supporting copy under the headline, one to three sentences; may be empty.'),
  channel: z
    .enum(['square', 'landscape', 'story'])
    .default('square')
    .describe('Where the card is posted: square 1080×1080 (feeds), landscape 1200×628 (link cards), story 1080×1920.'),
  ...commonFields,
});
type Args = z.output<typeof input>;

const name = 'social_card';

const description =
  'Render a branded social media card (PNG) with your headline, body copy and logo, sized for the channel: ' +
  'square 1080×1080, landscape 1200×628 or story 1080×1920. Rendering is built in, offline and deterministic: ' +
  'the same arguments and seed give byte-identical images. The card is scored against the brand kit rubric ' +
  '(palette distance, text contrast, text fit, logo, banned phrases, size, safe margins) and the result lists ' +
  'each check with its evidence and a fix. ' +
  'Cost: 2 credits per card.';

type Side = 'top' | 'bottom' | 'left' | 'right';

/**
 * A big circle, a smaller one and a ring or a grid of dots, all inside the art area and clear of the
 * text side, so no decoration ever sits behind text.
 */
function decorations(art: Box, textSide: Side, colors: [Hex, Hex, Hex], rng: Prng): Shape[] {
  const u = Math.min(art.w, art.h);
  const roomFor = (cx: number, cy: number) =>
    ({ top: cy - art.y, bottom: art.y + art.h - cy, left: cx - art.x, right: art.x + art.w - cx })[textSide];
  const at = () => ({
    cx: Math.round(art.x + art.w * rng.range(0.2, 0.8)),
    cy: Math.round(art.y + art.h * rng.range(0.3, 0.8)),
  });
  const shapes: Shape[] = [];
  for (const [i, color] of [colors[0], colors[1]].entries()) {
    const { cx, cy } = at();
    const wanted = u * rng.range(0.3, 0.5) * (i === 0 ? 1.3 : 0.7);
    const r = Math.max(4, Math.round(Math.min(wanted, roomFor(cx, cy))));
    shapes.push({ kind: 'ellipse', cx, cy, rx: r, ry: r, fill: color });
  }
  const { cx, cy } = at();
  if (rng.chance(0.5)) {
    const width = Math.max(2, Math.round(u * 0.025));
    const r = Math.max(4, Math.round(Math.min(u * rng.range(0.15, 0.3), roomFor(cx, cy) - width)));
    shapes.push({ kind: 'ellipse', cx, cy, rx: r, ry: r, fill: 'none', stroke: { color: colors[2], width } });
  } else {
    const gap = Math.round(u * 0.07);
    const dot = Math.max(2, Math.round(u * 0.012));
    const cols = 4;
    const rows = 3;
    // Keep the whole grid inside the art area, whichever side the text is on.
    const x0 = Math.min(Math.max(cx, art.x + gap), art.x + art.w - cols * gap);
    const y0 = Math.min(Math.max(cy, art.y + gap), art.y + art.h - rows * gap);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        shapes.push({ kind: 'ellipse', cx: x0 + c * gap, cy: y0 + r * gap, rx: dot, ry: dot, fill: colors[2] });
      }
    }
  }
  return shapes;
}

function compose(args: Args, seed: number): Scene[] {
  const { width: W, height: H } = CHANNELS[args.channel];
  const rng = createPrng(seed);
  const roles: Roles = brandRoles(args.brand_kit);
  const u = Math.min(W, H);
  const m = Math.round(u * 0.06);
  const landscape = W > H;

  // The text column and the art area split the canvas; the seed decides which side the text takes.
  const flip = rng.chance(0.5);
  let column: Box;
  let art: Box;
  let textSide: Side;
  if (landscape) {
    const split = Math.round(W * 0.6);
    column = { x: flip ? W - split + m : m, y: m, w: split - 2 * m, h: H - 2 * m };
    art = { x: flip ? 0 : split, y: 0, w: W - split, h: H };
    textSide = flip ? 'right' : 'left';
  } else {
    const split = Math.round(H * (H > W ? 0.58 : 0.64));
    column = { x: m, y: flip ? H - split + m : m, w: W - 2 * m, h: split - 2 * m };
    art = { x: 0, y: flip ? 0 : split, w: W, h: H - split };
    textSide = flip ? 'bottom' : 'top';
  }

  // Three looks: a colour block beside light text, text straight on the primary colour, or a light panel.
  const look = rng.pick(['block', 'bold', 'panel'] as const);
  const elements: Scene['elements'] = [];
  let background = roles.background;
  let textOn = roles.background;
  if (look === 'block') {
    elements.push({ kind: 'rect', ...art, fill: roles.primary });
    elements.push(...decorations(art, textSide, [roles.accent, roles.secondary, roles.background], rng));
  } else if (look === 'bold') {
    background = roles.primary;
    textOn = roles.primary;
    elements.push(...decorations(art, textSide, [roles.accent, roles.secondary, roles.background], rng));
  } else {
    background = roles.secondary;
    elements.push(...decorations(art, textSide, [roles.primary, roles.accent, roles.background], rng));
    const pad = Math.round(m * 0.6);
    elements.push({
      kind: 'rect',
      x: column.x - pad,
      y: column.y - pad,
      w: column.w + 2 * pad,
      h: column.h + 2 * pad,
      r: Math.round(u * 0.03),
      fill: roles.background,
    });
  }

  const color = readableOn(textOn, args.brand_kit);
  elements.push(
    ...textStack({
      column,
      unit: u,
      logoText: args.brand_kit.logo_text,
      headline: args.headline,
      body: args.body,
      headlineMax: Math.round(u * (args.channel === 'story' ? 0.1 : landscape ? 0.085 : 0.09)),
      bodyMax: Math.round(u * 0.036),
      color,
      logoColor: color,
      markColor: roles.accent,
      ruleColor: roles.accent,
      valign: 'center',
    }),
  );

  return [
    {
      width: W,
      height: H,
      target: { width: W, height: H, label: `channel "${args.channel}"` },
      background,
      safeMargin: m,
      elements,
      copy: [{ id: 'headline', text: args.headline }, ...(args.body === '' ? [] : [{ id: 'body', text: args.body }])],
    },
  ];
}

function prompt(args: Args): PromptPlan {
  const { width, height } = CHANNELS[args.channel];
  const body = args.body === '' ? '' : ` Under it, the body copy "${args.body}".`;
  return {
    prompt:
      `A flat, branded social media card for the ${args.channel} channel: the headline "${args.headline}" set large and bold.` +
      `${body} Simple geometric decoration away from the text. ${describeBrand(args.brand_kit)}`,
    target: { width, height, label: `channel "${args.channel}"` },
    count: 1,
  };
}

const socialCard: ImageTool<typeof input> = {
  name,
  title: 'Social card',
  description,
  input,
  cost: () => 2,
  compose,
  prompt,
  brandKit: (args) => args.brand_kit,
};
export default socialCard;
