// Reading the rendered pixels inside a box of the layout: the checks judge what was drawn where the
// scene says something is, not the scene's intentions.
import type { Rgb } from '../color.js';
import type { Box } from '../compose/scene.js';
import type { Pixels } from './index.js';

export interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** The box as whole pixels, clipped to the image; empty when it lies outside. */
export function clip(image: Pixels, box: Box): Rect {
  return {
    x0: Math.max(0, Math.floor(box.x)),
    y0: Math.max(0, Math.floor(box.y)),
    x1: Math.min(image.width, Math.ceil(box.x + box.w)),
    y1: Math.min(image.height, Math.ceil(box.y + box.h)),
  };
}

/** Calls fn for every pixel of `rect` outside `hole`, composited over white (alpha is rare but possible). */
export function eachPixel(image: Pixels, rect: Rect, fn: (c: Rgb) => void, hole?: Rect): void {
  const { rgba, width } = image;
  for (let y = rect.y0; y < rect.y1; y++) {
    for (let x = rect.x0; x < rect.x1; x++) {
      if (hole && x >= hole.x0 && x < hole.x1 && y >= hole.y0 && y < hole.y1) continue;
      const i = 4 * (y * width + x);
      const a = rgba[i + 3]! / 255;
      const over = (v: number) => v * a + 255 * (1 - a);
      fn({ r: over(rgba[i]!), g: over(rgba[i + 1]!), b: over(rgba[i + 2]!) });
    }
  }
}

/**
 * The most common colour among the pixels fed to it: colours are bucketed 32 levels a channel so
 * anti-aliasing and gradients do not split the vote, and the winning bucket's mean is returned.
 */
export function dominantColor(feed: (fn: (c: Rgb) => void) => void): { color: Rgb; count: number } {
  const counts = new Map<number, { n: number; r: number; g: number; b: number }>();
  let total = 0;
  feed((c) => {
    const key = ((c.r >> 3) << 10) | ((c.g >> 3) << 5) | (c.b >> 3);
    const bucket = counts.get(key) ?? { n: 0, r: 0, g: 0, b: 0 };
    bucket.n++;
    bucket.r += c.r;
    bucket.g += c.g;
    bucket.b += c.b;
    counts.set(key, bucket);
    total++;
  });
  let best: { n: number; r: number; g: number; b: number } | undefined;
  for (const bucket of counts.values()) if (!best || bucket.n > best.n) best = bucket;
  if (!best) return { color: { r: 255, g: 255, b: 255 }, count: 0 };
  return { color: { r: best.r / best.n, g: best.g / best.n, b: best.b / best.n }, count: total };
}
