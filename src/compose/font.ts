// The one font the built-in renderer uses, shipped inside an npm package (never a system font, never a
// download), and its metrics, read straight from the TTF so composers can wrap text to fit before rendering.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export const FONT_FAMILY = 'Open Sans';

export type FontWeight = 400 | 700;

// Resolved through Node's resolver so it works from src/, dist/ and a global `npx` install alike.
const require = createRequire(import.meta.url);
export const FONT_FILES: Record<FontWeight, string> = {
  400: require.resolve('open-sans-fonts/open-sans/Regular/OpenSans-Regular.ttf'),
  700: require.resolve('open-sans-fonts/open-sans/Bold/OpenSans-Bold.ttf'),
};

interface Glyph {
  /** All in em. */
  advance: number;
  /** Horizontal ink bounds from the pen position; undefined for glyphs without ink (space). */
  xMin?: number;
  xMax?: number;
}

interface Metrics {
  /** hhea ascender/descender in em: every glyph's ink lies within them. */
  ascent: number;
  descent: number;
  glyph(codePoint: number): Glyph;
}

/** The few TrueType tables text measuring needs: head, hhea, hmtx, loca, glyf and the (3,1) format-4 cmap. */
function parseMetrics(file: string): Metrics {
  const b = readFileSync(file);
  const tables = new Map<string, number>();
  for (let i = 0; i < b.readUInt16BE(4); i++) {
    const rec = 12 + 16 * i;
    tables.set(b.toString('latin1', rec, rec + 4), b.readUInt32BE(rec + 8));
  }
  const at = (tag: string) => {
    const off = tables.get(tag);
    if (off === undefined) throw new Error(`${file} has no ${tag} table`);
    return off;
  };
  const unitsPerEm = b.readUInt16BE(at('head') + 18);
  const hhea = at('hhea');
  const ascender = b.readInt16BE(hhea + 4);
  const descender = b.readInt16BE(hhea + 6);
  const numberOfHMetrics = b.readUInt16BE(hhea + 34);
  const hmtx = at('hmtx');

  const cmap = at('cmap');
  let sub = -1;
  for (let i = 0; i < b.readUInt16BE(cmap + 2); i++) {
    const rec = cmap + 4 + 8 * i;
    if (b.readUInt16BE(rec) === 3 && b.readUInt16BE(rec + 2) === 1) sub = cmap + b.readUInt32BE(rec + 4);
  }
  if (sub < 0 || b.readUInt16BE(sub) !== 4) throw new Error(`${file} has no Unicode BMP cmap`);
  const segCount = b.readUInt16BE(sub + 6) / 2;
  const ends = sub + 14;
  const starts = ends + 2 * segCount + 2;
  const deltas = starts + 2 * segCount;
  const rangeOffsets = deltas + 2 * segCount;

  const glyphOf = (cp: number): number => {
    if (cp > 0xffff) return 0;
    for (let s = 0; s < segCount; s++) {
      if (cp > b.readUInt16BE(ends + 2 * s)) continue;
      const start = b.readUInt16BE(starts + 2 * s);
      if (cp < start) return 0;
      const delta = b.readInt16BE(deltas + 2 * s);
      const ro = b.readUInt16BE(rangeOffsets + 2 * s);
      if (ro === 0) return (cp + delta) & 0xffff;
      const g = b.readUInt16BE(rangeOffsets + 2 * s + ro + 2 * (cp - start));
      return g === 0 ? 0 : (g + delta) & 0xffff;
    }
    return 0;
  };
  const longLoca = b.readInt16BE(at('head') + 50) === 1;
  const loca = at('loca');
  const glyf = at('glyf');
  const glyphOffset = (g: number) => (longLoca ? b.readUInt32BE(loca + 4 * g) : 2 * b.readUInt16BE(loca + 2 * g));

  const cache = new Map<number, Glyph>();
  return {
    ascent: ascender / unitsPerEm,
    descent: -descender / unitsPerEm,
    glyph(cp) {
      let glyph = cache.get(cp);
      if (!glyph) {
        const g = glyphOf(cp);
        glyph = { advance: b.readUInt16BE(hmtx + 4 * Math.min(g, numberOfHMetrics - 1)) / unitsPerEm };
        if (glyphOffset(g + 1) > glyphOffset(g)) {
          const header = glyf + glyphOffset(g);
          glyph.xMin = b.readInt16BE(header + 2) / unitsPerEm;
          glyph.xMax = b.readInt16BE(header + 6) / unitsPerEm;
        }
        cache.set(cp, glyph);
      }
      return glyph;
    },
  };
}

const loaded = new Map<FontWeight, Metrics>();
function metrics(weight: FontWeight): Metrics {
  let m = loaded.get(weight);
  if (!m) {
    m = parseMetrics(FONT_FILES[weight]);
    loaded.set(weight, m);
  }
  return m;
}

/**
 * Where a line's ink reaches, in pixels from its pen start: `left` ≤ 0 (a "j" hangs left), `right` ≥ the
 * advance width. Kerning only ever pulls Open Sans glyphs together, so these bound what the renderer draws.
 */
export function lineExtent(
  text: string,
  fontSize: number,
  weight: FontWeight,
): { left: number; right: number; advance: number } {
  const m = metrics(weight);
  let pen = 0;
  let left = 0;
  let right = 0;
  for (const ch of text) {
    const g = m.glyph(ch.codePointAt(0)!);
    if (g.xMin !== undefined && g.xMax !== undefined) {
      left = Math.min(left, pen + g.xMin);
      right = Math.max(right, pen + g.xMax);
    }
    pen += g.advance;
  }
  return { left: left * fontSize, right: Math.max(right, pen) * fontSize, advance: pen * fontSize };
}

/** The width a line's ink needs, overhangs included. */
export function textWidth(text: string, fontSize: number, weight: FontWeight): number {
  const { left, right } = lineExtent(text, fontSize, weight);
  return right - left;
}

/** How far glyph ink can reach above and below the baseline, in pixels. */
export function verticalExtent(fontSize: number, weight: FontWeight): { ascent: number; descent: number } {
  const m = metrics(weight);
  return { ascent: m.ascent * fontSize, descent: m.descent * fontSize };
}
