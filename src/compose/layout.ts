// Layout helpers the composers share: brand colours by role, text wrapped and sized to fit a region, the
// logo lockup. Everything here is integer-friendly arithmetic, so a scene composes identically everywhere.
import type { BrandKit } from '../brand.js';
import { contrastRatio, luminance, parseHex } from '../color.js';
import { lineExtent, textWidth, verticalExtent, type FontWeight } from './font.js';
import type { Box, Hex, LogoElement, SceneElement, Shape, TextElement } from './scene.js';

export interface Roles {
  background: Hex;
  text: Hex;
  primary: Hex;
  secondary: Hex;
  accent: Hex;
}

const contrast = (a: Hex, b: Hex) => contrastRatio(parseHex(a), parseHex(b));

/** The kit's colour for each role; a missing role is derived from the others. */
export function brandRoles(brand: BrandKit): Roles {
  const byRole = (role: string) => brand.palette.find((c) => c.role === role)?.hex;
  const hexes = brand.palette.map((c) => c.hex);
  const background =
    byRole('background') ?? hexes.reduce((a, b) => (luminance(parseHex(b)) > luminance(parseHex(a)) ? b : a));
  const text = byRole('text') ?? readableOn(background, brand);
  // Missing roles take colours the kit has not used yet, so decorations do not all come out one colour.
  const spare = hexes.filter((h) => h !== background && h !== text);
  const take = (role: string, fallback: Hex): Hex => {
    const hex = byRole(role) ?? spare[0] ?? fallback;
    const i = spare.indexOf(hex);
    if (i >= 0) spare.splice(i, 1);
    return hex;
  };
  const primary = take('primary', text);
  const accent = take('accent', primary);
  const secondary = take('secondary', text);
  return { background, text, primary, secondary, accent };
}

/**
 * A colour for text on `bg` that meets `min` contrast: the kit's text colour if it does, else its most
 * contrasting colour, else near-black or white — legibility wins over palette purity.
 */
export function readableOn(bg: Hex, brand: BrandKit, min = 4.5): Hex {
  const text = brand.palette.find((c) => c.role === 'text')?.hex;
  if (text && contrast(text, bg) >= min) return text;
  const best = brand.palette.map((c) => c.hex).reduce((a, b) => (contrast(b, bg) > contrast(a, bg) ? b : a));
  if (contrast(best, bg) >= min) return best;
  return contrast('#111111', bg) >= contrast('#FFFFFF', bg) ? '#111111' : '#FFFFFF';
}

/** The palette colour (other than `bg`) that stands out most against `bg`; for shapes, not text. */
export function standsOut(bg: Hex, candidates: Hex[]): Hex {
  return candidates.reduce((a, b) => (contrast(b, bg) > contrast(a, bg) ? b : a));
}

/** Greedy word wrap; a word too long for a line on its own is split between characters. */
export function wrap(text: string, fontSize: number, weight: FontWeight, maxWidth: number): string[] {
  const fits = (s: string) => textWidth(s, fontSize, weight) <= maxWidth;
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const joined = line ? `${line} ${word}` : word;
    if (fits(joined)) {
      line = joined;
      continue;
    }
    if (line) lines.push(line);
    line = '';
    for (const ch of word) {
      if (line && !fits(line + ch)) {
        lines.push(line);
        line = '';
      }
      line += ch;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** Whether wrapping broke a word between lines (wrap only does that to a word wider than a line). */
export function splitsAWord(text: string, lines: string[]): boolean {
  return lines.join(' ') !== text.split(/\s+/).filter(Boolean).join(' ');
}

/** Drops words (then characters) from the end of `line` until it fits with an ellipsis. */
function ellipsize(line: string, fontSize: number, weight: FontWeight, maxWidth: number): string {
  let s = line;
  while (s.length > 0 && textWidth(`${s}…`, fontSize, weight) > maxWidth) {
    const cut = s.lastIndexOf(' ');
    s = cut > 0 ? s.slice(0, cut) : s.slice(0, -1);
  }
  return `${s.trimEnd()}…`;
}

export interface FitOptions {
  id: string;
  text: string;
  /** Where the text may go; its box never leaves this region. */
  region: Box;
  weight: FontWeight;
  maxSize: number;
  minSize: number;
  maxLines: number;
  color: Hex;
  align?: 'start' | 'middle';
  valign?: 'top' | 'center' | 'bottom';
  /** Baseline-to-baseline distance as a multiple of the font size. */
  leading?: number;
}

/**
 * The largest font size (from maxSize down to minSize) at which `text` wraps into maxLines inside the
 * region; at minSize the overflow is cut with an ellipsis. The box bounds every glyph's ink horizontally
 * and the font's full ascent and descent vertically, so the rubric can trust it.
 */
export function fitText(o: FitOptions): TextElement {
  const leading = o.leading ?? 1.2;
  const heightFor = (size: number, n: number) => {
    const { ascent, descent } = verticalExtent(size, o.weight);
    return (n - 1) * Math.round(size * leading) + ascent + descent;
  };

  let size = o.maxSize;
  let lines = wrap(o.text, size, o.weight, o.region.w);
  // A smaller size is worth it to keep a word whole: "Extraordinar-/ily" reads as a mistake.
  while (
    size > o.minSize &&
    (lines.length > o.maxLines || heightFor(size, lines.length) > o.region.h || splitsAWord(o.text, lines))
  ) {
    size = Math.max(o.minSize, size - Math.max(1, Math.round(size * 0.06)));
    lines = wrap(o.text, size, o.weight, o.region.w);
  }
  let room = o.maxLines;
  while (room > 1 && heightFor(size, room) > o.region.h) room--;
  if (lines.length > room) {
    lines = lines.slice(0, room);
    lines[room - 1] = ellipsize(lines[room - 1]!, size, o.weight, o.region.w);
  }

  const h = Math.ceil(heightFor(size, lines.length));
  const valign = o.valign ?? 'top';
  const y =
    valign === 'top'
      ? o.region.y
      : valign === 'bottom'
        ? o.region.y + o.region.h - h
        : o.region.y + Math.floor((o.region.h - h) / 2);

  // Place the lines so their ink, overhangs included, starts at the region's left edge (or centres in it).
  const extents = lines.map((l) => lineExtent(l, size, o.weight));
  const middle = o.align === 'middle';
  const x = middle ? o.region.x + o.region.w / 2 : o.region.x - Math.min(...extents.map((e) => e.left));
  const starts = extents.map((e) => (middle ? x - e.advance / 2 : x));
  const left = Math.floor(Math.min(...extents.map((e, i) => starts[i]! + e.left)));
  const right = Math.ceil(Math.max(...extents.map((e, i) => starts[i]! + e.right)));
  return {
    kind: 'text',
    id: o.id,
    lines,
    x,
    baseline: y + verticalExtent(size, o.weight).ascent,
    lineHeight: Math.round(size * leading),
    fontSize: size,
    weight: o.weight,
    color: o.color,
    anchor: middle ? 'middle' : 'start',
    box: { x: left, y, w: right - left, h },
  };
}

/**
 * The logo lockup: a round mark and the bold wordmark, its top-left at (x, y), no wider than maxWidth.
 * `align` says whether x is its left edge, centre or right edge.
 */
export function logoLockup(
  text: string,
  o: {
    x: number;
    y: number;
    size: number;
    maxWidth: number;
    color: Hex;
    markColor: Hex;
    align?: 'start' | 'middle' | 'end';
  },
): LogoElement {
  const widthAt = (size: number) => Math.ceil(size * 1.1 + lineExtent(text, size, 700).right);
  let size = o.size;
  while (size > 8 && widthAt(size) > o.maxWidth) size--;
  const { ascent, descent } = verticalExtent(size, 700);
  const w = widthAt(size);
  const left = o.align === 'end' ? o.x - w : o.align === 'middle' ? o.x - Math.floor(w / 2) : o.x;
  const baseline = o.y + ascent;
  const markR = Math.round(size * 0.4);
  return {
    kind: 'logo',
    text,
    box: { x: left, y: o.y, w, h: Math.ceil(ascent + descent) },
    color: o.color,
    markColor: o.markColor,
    fontSize: size,
    textX: left + Math.round(size * 1.1),
    baseline,
    markCx: left + markR,
    // Centre the mark on the capitals, which span 0.714 em above the baseline in Open Sans.
    markCy: baseline - Math.round(size * 0.357),
    markR,
  };
}

/**
 * The smallest type that reads: 2.2% of the canvas's short side, never under 12px — 24px on a 1080px
 * image, about 9pt once that image fills a phone's width. Composers set nothing smaller (copy that does
 * not fit at this size is cut), and the rubric's text_fit holds every image to it.
 */
export function readableSize(unit: number): number {
  return Math.max(12, Math.round(unit * 0.022));
}

export interface TextStackOptions {
  /** Where the logo, headline and body go, top to bottom. */
  column: Box;
  /** The canvas's short side; sizes and gaps scale with it. */
  unit: number;
  logoText: string;
  headline: string;
  body: string;
  headlineMax: number;
  bodyMax: number;
  color: Hex;
  logoColor: Hex;
  markColor: Hex;
  ruleColor: Hex;
  align?: 'start' | 'middle';
  /** Where the rule, headline and body sit in the room under the logo. */
  valign?: 'top' | 'center';
}

/** Logo, a short accent rule, the headline and the body copy, stacked down a column. */
export function textStack(o: TextStackOptions): SceneElement[] {
  const u = o.unit;
  const middle = o.align === 'middle';
  const bottom = o.column.y + o.column.h;
  const logo = logoLockup(o.logoText, {
    x: middle ? o.column.x + Math.floor(o.column.w / 2) : o.column.x,
    y: o.column.y,
    size: Math.max(10, Math.round(u * 0.036)),
    maxWidth: o.column.w,
    color: o.logoColor,
    markColor: o.markColor,
    align: middle ? 'middle' : 'start',
  });
  let y = logo.box.y + logo.box.h + Math.round(u * 0.04);
  const ruleW = Math.round(u * 0.08);
  const ruleH = Math.max(2, Math.round(u * 0.008));
  const rule: Shape = {
    kind: 'rect',
    x: middle ? o.column.x + Math.floor((o.column.w - ruleW) / 2) : o.column.x,
    y,
    w: ruleW,
    h: ruleH,
    r: ruleH / 2,
    fill: o.ruleColor,
  };
  y += ruleH + Math.round(u * 0.03);
  const room = bottom - y;
  const headline = fitText({
    id: 'headline',
    text: o.headline,
    region: { x: o.column.x, y, w: o.column.w, h: o.body ? Math.floor(room * 0.62) : room },
    weight: 700,
    maxSize: o.headlineMax,
    minSize: Math.max(readableSize(u), Math.round(o.headlineMax * 0.45)),
    maxLines: 4,
    leading: 1.12,
    color: o.color,
    align: o.align,
  });
  const group: (Shape | TextElement)[] = [rule, headline];
  const bodyTop = headline.box.y + headline.box.h + Math.round(u * 0.03);
  const bodyMin = Math.max(readableSize(u), Math.round(o.bodyMax * 0.6));
  // Body copy is dropped rather than squeezed below a readable size.
  if (o.body && bottom - bodyTop >= bodyMin * 1.4) {
    group.push(
      fitText({
        id: 'body',
        text: o.body,
        region: { x: o.column.x, y: bodyTop, w: o.column.w, h: bottom - bodyTop },
        weight: 400,
        maxSize: o.bodyMax,
        minSize: bodyMin,
        maxLines: 6,
        leading: 1.35,
        color: o.color,
        align: o.align,
      }),
    );
  }
  if (o.valign === 'center') {
    const last = group[group.length - 1] as TextElement;
    const dy = Math.floor((bottom - (last.box.y + last.box.h)) / 2);
    for (const e of group) {
      if (e.kind === 'text') {
        e.baseline += dy;
        e.box.y += dy;
      } else if (e.kind === 'rect') {
        e.y += dy;
      }
    }
  }
  return [logo, ...group];
}
