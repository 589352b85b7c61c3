// Flat product silhouettes for product_shot, drawn from brand colours only, so the picture stays on
// palette. Each is designed on a small unit grid and scaled into the region the composer gives it.
import type { Box, Hex, Shape } from './scene.js';

export const PRODUCT_KINDS = ['bottle', 'can', 'box', 'jar', 'phone', 'mug'] as const;
export type ProductKind = (typeof PRODUCT_KINDS)[number];

// Words in a brief that say which silhouette fits: containers first, so "coffee in a can" is a can;
// then what the product holds or does.
const NOUNS: [ProductKind, RegExp][] = [
  ['bottle', /\bbottles?\b/i],
  // "can" alone is usually the verb.
  ['can', /\b(cans|an? can|the can|tin can|canned)\b/i],
  ['jar', /\bjars?\b/i],
  ['box', /\b(box|boxes|package|packaging|carton)\b/i],
  ['phone', /\b(phones?|smartphones?|tablets?)\b/i],
  ['mug', /\b(mugs?|cups?)\b/i],
];
const HINTS: [ProductKind, RegExp][] = [
  ['phone', /\b(apps?|devices?|gadgets?)\b/i],
  ['mug', /\b(coffee|tea|latte|espresso)\b/i],
  ['can', /\b(soda|beer|seltzer|energy drink)\b/i],
  ['jar', /\b(cream|balm|candle|jam|honey)\b/i],
  ['bottle', /\b(water|serum|perfume|shampoo|oil|wine|drink|flasks?|tumblers?)\b/i],
  ['box', /\b(kit|gift|cereal|subscription)\b/i],
];

/** The silhouette a brief names, if any. */
export function productKindFor(brief: string): ProductKind | undefined {
  return (NOUNS.find(([, re]) => re.test(brief)) ?? HINTS.find(([, re]) => re.test(brief)))?.[0];
}

export interface ProductColors {
  body: Hex;
  trim: Hex;
  label: Hex;
}

type Unit = { w: number; h: number; draw: (c: ProductColors) => Shape[] };

const rect = (x: number, y: number, w: number, h: number, fill: Hex, r = 0, opacity?: number): Shape => ({
  kind: 'rect',
  x,
  y,
  w,
  h,
  r,
  fill,
  ...(opacity === undefined ? {} : { opacity }),
});

const UNITS: Record<ProductKind, Unit> = {
  bottle: {
    w: 40,
    h: 100,
    draw: (c) => [
      rect(13, 8, 14, 18, c.body, 3),
      rect(0, 22, 40, 78, c.body, 12),
      rect(11, 0, 18, 12, c.trim, 3),
      rect(0, 48, 40, 30, c.label),
      rect(0, 56, 40, 4, c.trim),
      rect(6, 30, 4, 14, c.label, 2, 0.5),
    ],
  },
  can: {
    w: 44,
    h: 80,
    draw: (c) => [
      rect(0, 4, 44, 72, c.body, 5),
      rect(2, 0, 40, 8, c.trim, 4),
      rect(2, 72, 40, 8, c.trim, 4),
      rect(0, 26, 44, 26, c.label),
      { kind: 'ellipse', cx: 22, cy: 39, rx: 7, ry: 7, fill: c.trim },
      rect(6, 12, 4, 10, c.label, 2, 0.5),
    ],
  },
  box: {
    w: 70,
    h: 70,
    draw: (c) => [
      {
        kind: 'polygon',
        points: [
          [0, 20],
          [48, 20],
          [48, 70],
          [0, 70],
        ],
        fill: c.body,
      },
      // The lid takes an outline: it is often the same colour as the backdrop.
      {
        kind: 'polygon',
        points: [
          [0, 20],
          [22, 0],
          [70, 0],
          [48, 20],
        ],
        fill: c.label,
        stroke: { color: c.body, width: 2 },
      },
      {
        kind: 'polygon',
        points: [
          [48, 20],
          [70, 0],
          [70, 50],
          [48, 70],
        ],
        fill: c.trim,
      },
      rect(0, 40, 48, 9, c.label),
    ],
  },
  jar: {
    w: 60,
    h: 66,
    draw: (c) => [
      rect(0, 12, 60, 54, c.body, 14),
      rect(4, 0, 52, 15, c.trim, 4),
      rect(0, 30, 60, 22, c.label),
      rect(22, 36, 16, 10, c.trim, 5),
    ],
  },
  phone: {
    w: 46,
    h: 92,
    draw: (c) => [
      rect(0, 0, 46, 92, c.body, 8),
      rect(3, 6, 40, 80, c.label, 4),
      rect(17, 2, 12, 2.5, c.trim, 1.25),
      { kind: 'ellipse', cx: 23, cy: 30, rx: 9, ry: 9, fill: c.trim },
      rect(9, 48, 28, 5, c.body, 2.5),
      rect(13, 57, 20, 4, c.body, 2, 0.6),
      rect(9, 70, 28, 9, c.trim, 4.5),
    ],
  },
  mug: {
    w: 66,
    h: 56,
    draw: (c) => [
      { kind: 'ellipse', cx: 52, cy: 27, rx: 11, ry: 13, fill: 'none', stroke: { color: c.body, width: 6 } },
      rect(0, 4, 52, 52, c.body, 8),
      rect(0, 0, 52, 9, c.trim, 4),
      { kind: 'ellipse', cx: 26, cy: 32, rx: 10, ry: 10, fill: c.label },
    ],
  },
};

/** Scales a unit-grid coordinate into the region; every drawn number passes through here. */
function scaleShape(s: Shape, ox: number, oy: number, k: number): Shape {
  const stroke = s.stroke ? { stroke: { ...s.stroke, width: s.stroke.width * k } } : {};
  switch (s.kind) {
    case 'rect':
      return { ...s, ...stroke, x: ox + s.x * k, y: oy + s.y * k, w: s.w * k, h: s.h * k, r: (s.r ?? 0) * k };
    case 'ellipse':
      return { ...s, ...stroke, cx: ox + s.cx * k, cy: oy + s.cy * k, rx: s.rx * k, ry: s.ry * k };
    case 'polygon':
      return { ...s, ...stroke, points: s.points.map(([x, y]) => [ox + x * k, oy + y * k]) };
  }
}

/** The size of the product drawn as large as fits in maxW × maxH. */
export function productSize(kind: ProductKind, maxW: number, maxH: number): { w: number; h: number } {
  const unit = UNITS[kind];
  const k = Math.min(maxW / unit.w, maxH / unit.h);
  return { w: unit.w * k, h: unit.h * k };
}

/** The product, as large as fits in `region`, centred horizontally and standing on its bottom edge. */
export function drawProduct(kind: ProductKind, region: Box, colors: ProductColors): Shape[] {
  const unit = UNITS[kind];
  const { w, h } = productSize(kind, region.w, region.h);
  const ox = region.x + (region.w - w) / 2;
  const oy = region.y + region.h - h;
  return unit.draw(colors).map((s) => scaleShape(s, ox, oy, w / unit.w));
}
