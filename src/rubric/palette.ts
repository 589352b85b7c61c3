// The colours an image is made of: its pixels grouped into a few dominant colours, each with its
// share of the image. The palette check compares these with the brand kit, so a photograph, a flat
// render and a washed-out copy are all judged by what a person would name as "its colours".
import { deltaE, toHex, toLab, type Lab, type Rgb } from '../color.js';
import type { Pixels } from './index.js';

export interface DominantColor {
  rgb: Rgb;
  lab: Lab;
  hex: string;
  /** Share of the image's pixels, 0..1. */
  share: number;
}

/** Pixels this close (ΔE) to a colour's first member join it: anti-aliasing and noise do not split a colour. */
export const CLUSTER_DELTA_E = 10;
/** Past this many colours the rest join the nearest one: a photograph has thousands, a person names a few. */
const MAX_COLORS = 48;

/**
 * The image's colours, largest first. Pixels are counted in buckets of 8 levels a channel (32,768 in
 * all), then the buckets are grouped greedily, largest first, each joining the first colour within
 * CLUSTER_DELTA_E of it. Transparent pixels are seen over white, as a viewer would show them.
 */
export function dominantColors(image: Pixels): DominantColor[] {
  const count = new Uint32Array(32768);
  const sums = new Float64Array(32768 * 3);
  const { rgba } = image;
  const total = image.width * image.height;
  for (let i = 0; i < total; i++) {
    const o = 4 * i;
    const a = rgba[o + 3]!;
    let r = rgba[o]!;
    let g = rgba[o + 1]!;
    let b = rgba[o + 2]!;
    if (a !== 255) {
      const k = a / 255;
      r = Math.round(r * k + 255 * (1 - k));
      g = Math.round(g * k + 255 * (1 - k));
      b = Math.round(b * k + 255 * (1 - k));
    }
    const key = ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
    count[key]!++;
    sums[3 * key]! += r;
    sums[3 * key + 1]! += g;
    sums[3 * key + 2]! += b;
  }
  const buckets: { n: number; rgb: Rgb; lab: Lab }[] = [];
  for (let key = 0; key < 32768; key++) {
    const n = count[key]!;
    if (n === 0) continue;
    const rgb = { r: sums[3 * key]! / n, g: sums[3 * key + 1]! / n, b: sums[3 * key + 2]! / n };
    buckets.push({ n, rgb, lab: toLab(rgb) });
  }
  buckets.sort((x, y) => y.n - x.n);

  const groups: { seed: Lab; n: number; r: number; g: number; b: number }[] = [];
  for (const bucket of buckets) {
    let home: (typeof groups)[number] | undefined;
    let nearest = Infinity;
    for (const group of groups) {
      const d = deltaE(group.seed, bucket.lab);
      if (d < nearest) {
        nearest = d;
        home = group;
      }
    }
    if (home === undefined || (nearest > CLUSTER_DELTA_E && groups.length < MAX_COLORS)) {
      home = { seed: bucket.lab, n: 0, r: 0, g: 0, b: 0 };
      groups.push(home);
    }
    home.n += bucket.n;
    home.r += bucket.rgb.r * bucket.n;
    home.g += bucket.rgb.g * bucket.n;
    home.b += bucket.rgb.b * bucket.n;
  }
  return groups
    .map((group) => {
      const rgb = { r: group.r / group.n, g: group.g / group.n, b: group.b / group.n };
      return { rgb, lab: toLab(rgb), hex: toHex(rgb), share: group.n / Math.max(1, total) };
    })
    .sort((x, y) => y.share - x.share);
}

/** Colours this strong (CIELAB chroma)... */
export const CLASH_MIN_CHROMA = 40;
/** ...this close in lightness... */
export const CLASH_MAX_LIGHTNESS_GAP = 15;
/** ...and this far apart in hue (degrees) make an edge that vibrates. */
export const CLASH_MIN_HUE_GAP = 60;
/**
 * A clash counts when the edge between the two is this share of either one's whole outline (a shape in
 * a clashing colour set on a clashing ground), and not a speck: at least CLASH_MIN_EDGE of the image.
 */
export const CLASH_MIN_OUTLINE = 0.25;
export const CLASH_MIN_EDGE = 0.0005;

export interface Clash {
  a: DominantColor;
  b: DominantColor;
  /** Neighbouring samples on the edge between them, as a share of all samples. */
  edge: number;
}

const chroma = (lab: Lab) => Math.hypot(lab.a, lab.b);
const hue = (lab: Lab) => ((Math.atan2(lab.b, lab.a) * 180) / Math.PI + 360) % 360;

/**
 * Pairs of dominant colours that meet along an edge and vibrate there: both strongly coloured, about
 * equally light, far apart in hue (saturated red on green, orange on magenta). Such an edge is hard
 * to look at, and text across it is hard to read; a kit whose colours clash produces them.
 */
export function clashingPairs(image: Pixels, colors: DominantColor[]): Clash[] {
  const strong = colors.slice(0, 8).filter((c) => c.share >= 0.01);
  if (strong.length < 2) return [];
  const step = 4;
  const cols = Math.floor(image.width / step);
  const rows = Math.floor(image.height / step);
  const labels = new Int8Array(cols * rows);
  // Which strong colour a pixel belongs to, decided once per bucket of 8 levels a channel.
  const byBucket = new Int8Array(32768).fill(-2);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const o = 4 * (y * step * image.width + x * step);
      const key = ((image.rgba[o]! >> 3) << 10) | ((image.rgba[o + 1]! >> 3) << 5) | (image.rgba[o + 2]! >> 3);
      let best = byBucket[key]!;
      if (best === -2) {
        const lab = toLab({ r: image.rgba[o]!, g: image.rgba[o + 1]!, b: image.rgba[o + 2]! });
        best = -1;
        let nearest = CLUSTER_DELTA_E * 1.5;
        strong.forEach((c, i) => {
          const d = deltaE(c.lab, lab);
          if (d < nearest) {
            nearest = d;
            best = i;
          }
        });
        byBucket[key] = best;
      }
      labels[y * cols + x] = best;
    }
  }
  const edges = new Map<number, number>();
  const outline = new Array<number>(strong.length).fill(0);
  const meet = (i: number, j: number) => {
    if (i === j) return;
    if (i >= 0) outline[i]!++;
    if (j >= 0) outline[j]!++;
    if (i < 0 || j < 0) return;
    const key = Math.min(i, j) * 16 + Math.max(i, j);
    edges.set(key, (edges.get(key) ?? 0) + 1);
  };
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const here = labels[y * cols + x]!;
      if (x + 1 < cols) meet(here, labels[y * cols + x + 1]!);
      if (y + 1 < rows) meet(here, labels[(y + 1) * cols + x]!);
    }
  }
  const clashes: Clash[] = [];
  for (const [key, n] of edges) {
    const [i, j] = [Math.floor(key / 16), key % 16];
    const a = strong[i]!;
    const b = strong[j]!;
    const edge = n / Math.max(1, cols * rows);
    const share = n / Math.max(1, Math.min(outline[i]!, outline[j]!));
    const gap = Math.abs(hue(a.lab) - hue(b.lab));
    const vibrates =
      chroma(a.lab) >= CLASH_MIN_CHROMA &&
      chroma(b.lab) >= CLASH_MIN_CHROMA &&
      Math.abs(a.lab.l - b.lab.l) <= CLASH_MAX_LIGHTNESS_GAP &&
      Math.min(gap, 360 - gap) >= CLASH_MIN_HUE_GAP;
    if (vibrates && edge >= CLASH_MIN_EDGE && share >= CLASH_MIN_OUTLINE) clashes.push({ a, b, edge });
  }
  return clashes.sort((x, y) => y.edge - x.edge);
}
