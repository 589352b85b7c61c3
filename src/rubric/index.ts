// The brand rubric: scores a rendered image against a brand kit. Visual checks read the rendered pixels,
// not the scene's intentions, so a rendering bug or an unreadable colour choice shows up as a failed check.
import { CHECK_IDS, checkWeight, type BrandKit, type CheckId } from '../brand.js';
import { contrastRatio, distance, parseHex, requiredContrast, toHex, type Rgb } from '../color.js';
import { logoElements, textElements, type Box, type Scene, type SizeTarget } from '../compose/scene.js';

export interface RubricCheck {
  id: CheckId;
  passed: boolean;
  weight: number;
  /** What was measured, with its numbers. */
  evidence: string;
  /** A concrete change that would make the check pass; null when it passed. */
  fix: string | null;
}

export interface Evaluation {
  /** Weighted share of tested checks that passed, 0..1; with the default weights, passed ÷ tested. */
  score: number;
  passed: number;
  tested: number;
  checks: RubricCheck[];
  /** Checks not run, each with why: weighted 0 by the brand kit, or needing a layout the provider did not share. */
  skipped: { id: CheckId; reason: string }[];
}

/** An image as the checks read it. */
export interface Pixels {
  width: number;
  height: number;
  /** Straight (not premultiplied) RGBA, row by row, 4 bytes a pixel. */
  rgba: Uint8Array;
}

/** The checks that read where the composer put text and the logo: only a scene says that. */
const NEEDS_SCENE: ReadonlySet<CheckId> = new Set(['safe_margin', 'logo_present', 'banned_phrases', 'text_contrast']);
const NO_SCENE_REASON = 'needs the composed layout; this image was drawn by a prompt-based provider, which does not say where text and logo are';

/** How far (RGB distance) a pixel may be from a brand colour and still count as on palette. */
export const PALETTE_TOLERANCE = 48;
/** Share of pixels that must be on palette. */
export const PALETTE_MIN_SHARE = 0.6;
/** Share of the logo box that must stand out from what is around it. */
export const LOGO_MIN_INK = 0.03;

type Outcome = Omit<RubricCheck, 'id' | 'weight'>;
const pass = (evidence: string): Outcome => ({ passed: true, evidence, fix: null });
const fail = (evidence: string, fix: string): Outcome => ({ passed: false, evidence, fix });

const ratio = (r: number) => `${(Math.floor(r * 100) / 100).toFixed(2)}:1`;
const pct = (share: number) => `${(share * 100).toFixed(1)}%`;

// ---- pixels ---------------------------------------------------------------------------------------

interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** The box as whole pixels, clipped to the image; empty when it lies outside. */
function clip(image: Pixels, box: Box): Rect {
  return {
    x0: Math.max(0, Math.floor(box.x)),
    y0: Math.max(0, Math.floor(box.y)),
    x1: Math.min(image.width, Math.ceil(box.x + box.w)),
    y1: Math.min(image.height, Math.ceil(box.y + box.h)),
  };
}

/** Calls fn for every pixel of `rect` outside `hole`, composited over white (alpha is rare but possible). */
function eachPixel(image: Pixels, rect: Rect, fn: (c: Rgb) => void, hole?: Rect): void {
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
function dominantColor(feed: (fn: (c: Rgb) => void) => void): { color: Rgb; count: number } {
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

// ---- checks ---------------------------------------------------------------------------------------

function checkSize(target: SizeTarget, image: Pixels): Outcome {
  const { width, height, label } = target;
  const got = `${image.width}×${image.height}`;
  if (image.width === width && image.height === height) {
    return pass(`${got} rendered; ${label} expects ${width}×${height}`);
  }
  return fail(
    `${got} rendered, but ${label} expects ${width}×${height}`,
    `Render at exactly ${width}×${height}; resizing afterwards would distort the layout.`,
  );
}

function checkSafeMargin(scene: Scene): Outcome {
  const m = scene.safeMargin;
  const items = [
    ...textElements(scene).map((t) => ({ name: t.id, box: t.box })),
    ...logoElements(scene).map((l) => ({ name: 'logo', box: l.box })),
  ];
  if (items.length === 0) return pass('no text or logo to keep inside the margin');
  const gaps = items.map(({ name, box }) => {
    const sides = {
      left: box.x,
      top: box.y,
      right: scene.width - (box.x + box.w),
      bottom: scene.height - (box.y + box.h),
    };
    const [side, gap] = Object.entries(sides).reduce((a, b) => (b[1] < a[1] ? b : a));
    return { name, side, gap: Math.floor(gap) };
  });
  const closest = gaps.reduce((a, b) => (b.gap < a.gap ? b : a));
  const bad = gaps.filter((g) => g.gap < m);
  if (bad.length === 0) {
    return pass(
      `all ${items.length} text and logo boxes keep ≥ ${m}px from the edges ` +
        `(closest: ${closest.name}, ${closest.gap}px)`,
    );
  }
  return fail(
    bad.map((g) => `${g.name} is ${g.gap}px from the ${g.side} edge`).join('; ') + ` (safe margin ${m}px)`,
    bad.map((g) => `Move ${g.name} ${m - g.gap}px further from the ${g.side} edge, or make it smaller`).join('; ') +
      '.',
  );
}

function checkLogo(scene: Scene, image: Pixels, brand: BrandKit): Outcome {
  const logos = logoElements(scene);
  const want = brand.logo_text;
  const addLogo = `Add the "${want}" logo inside the safe area, in a colour that stands out from its background.`;
  if (logos.length === 0) return fail('no logo in the image', addLogo);
  const normal = (s: string) => s.trim().replace(/\s+/g, ' ').toLowerCase();
  const logo = logos.find((l) => normal(l.text) === normal(want));
  if (!logo) {
    return fail(
      `logo reads "${logos[0]!.text}", brand logo_text is "${want}"`,
      `Use the brand wordmark "${want}" as the logo.`,
    );
  }
  const inner = clip(image, logo.box);
  const area = (inner.x1 - inner.x0) * (inner.y1 - inner.y0);
  if (area <= 0) return fail(`logo box ${describeBox(logo.box)} lies outside the image`, addLogo);
  // What surrounds the logo is its background; the logo is whatever inside its box differs from that.
  const ring = clip(image, { x: logo.box.x - 8, y: logo.box.y - 8, w: logo.box.w + 16, h: logo.box.h + 16 });
  const around = dominantColor((fn) => eachPixel(image, ring, fn, inner)).color;
  let ink = 0;
  eachPixel(image, inner, (c) => {
    if (distance(c, around) > 40) ink++;
  });
  const share = ink / area;
  const size = `${inner.x1 - inner.x0}×${inner.y1 - inner.y0}px`;
  const seen = `${pct(share)} of its ${size} box stands out from ${toHex(around)}`;
  if (share >= LOGO_MIN_INK) return pass(`logo "${logo.text}" drawn: ${seen}`);
  return fail(`logo "${logo.text}" is not visible: only ${seen} (needs ${pct(LOGO_MIN_INK)})`, addLogo);
}

function checkBannedPhrases(scene: Scene, brand: BrandKit): Outcome {
  // Curly quotes and line breaks must not hide a phrase.
  const normal = (s: string) => s.replace(/[‘’]/g, "'").replace(/[“”]/g, '"').replace(/\s+/g, ' ').toLowerCase();
  const texts = [
    ...textElements(scene).map((t) => ({ name: t.id, text: normal(t.lines.join(' ')) })),
    ...logoElements(scene).map((l) => ({ name: 'logo', text: normal(l.text) })),
  ];
  const hits = brand.banned_phrases.flatMap((phrase) =>
    texts.filter((t) => t.text.includes(normal(phrase))).map((t) => ({ phrase, name: t.name })),
  );
  if (hits.length === 0) {
    return pass(`none of ${brand.banned_phrases.length} banned phrases appear in ${texts.length} text elements`);
  }
  return fail(
    hits.map((h) => `"${h.phrase}" in ${h.name}`).join('; '),
    hits.map((h) => `Rewrite ${h.name} without "${h.phrase}"`).join('; ') + '.',
  );
}

function checkContrast(scene: Scene, image: Pixels, brand: BrandKit): Outcome {
  const texts = textElements(scene);
  if (texts.length === 0) return pass('no text to check');
  const results = texts.map((t) => {
    const rect = clip(image, t.box);
    const area = (rect.x1 - rect.x0) * (rect.y1 - rect.y0);
    const need = requiredContrast(t.fontSize, t.weight);
    // Text covers well under half its box, so the box's most common colour is what the text sits on.
    const bg = dominantColor((fn) => eachPixel(image, rect, fn)).color;
    // The ink is the declared colour if the pixels show it; otherwise the pixel farthest from the
    // background, so a colour that did not render is judged by what did.
    const declared = parseHex(t.color);
    let near = 0;
    let farthest = bg;
    eachPixel(image, rect, (c) => {
      if (distance(c, declared) <= 24) near++;
      if (distance(c, bg) > distance(farthest, bg)) farthest = c;
    });
    const ink = near >= Math.max(4, area * 0.002) ? declared : farthest;
    const r = area > 0 ? contrastRatio(ink, bg) : 1;
    return { t, bg, ink, r, need, ok: r >= need };
  });
  const line = (x: (typeof results)[number]) =>
    `${x.t.id} ${ratio(x.r)} (${toHex(x.ink)} on ${toHex(x.bg)}, needs ${x.need}:1)`;
  const bad = results.filter((x) => !x.ok);
  if (bad.length === 0) return pass(`contrast ${results.map(line).join('; ')}`);
  return fail(
    `low contrast: ${bad.map(line).join('; ')}`,
    bad
      .map((x) => {
        const bgHex = toHex(x.bg);
        const better = brand.palette
          .map((c) => c.hex)
          .find((h) => contrastRatio(parseHex(h), x.bg) >= x.need);
        const alt = contrastRatio({ r: 17, g: 17, b: 17 }, x.bg) >= x.need ? '#111111' : '#FFFFFF';
        return `Set ${x.t.id} in ${better ?? alt} (≥ ${x.need}:1 on ${bgHex}) or put it on a solid panel`;
      })
      .join('; ') + '.',
  );
}

function checkPalette(image: Pixels, brand: BrandKit): Outcome {
  const palette = brand.palette.map((c) => parseHex(c.hex));
  // Rendered images hold few distinct colours, so each is judged once.
  const verdicts = new Map<number, boolean>();
  const onPalette = (c: Rgb) => {
    const key = (c.r << 16) | (c.g << 8) | c.b;
    let v = verdicts.get(key);
    if (v === undefined) {
      v = palette.some((p) => distance(c, p) <= PALETTE_TOLERANCE);
      verdicts.set(key, v);
    }
    return v;
  };
  const all: Rect = { x0: 0, y0: 0, x1: image.width, y1: image.height };
  let on = 0;
  eachPixel(image, all, (c) => {
    if (onPalette(c)) on++;
  });
  const share = on / Math.max(1, image.width * image.height);
  const seen =
    `${pct(share)} of pixels within ${PALETTE_TOLERANCE} of a brand colour ` +
    `(needs ≥ ${pct(PALETTE_MIN_SHARE)})`;
  if (share >= PALETTE_MIN_SHARE) return pass(seen);
  const worst = toHex(
    dominantColor((fn) =>
      eachPixel(image, all, (c) => {
        if (!onPalette(c)) fn(c);
      }),
    ).color,
  );
  return fail(
    `${seen}; the most common off-palette colour is ${worst}`,
    `Replace the ${worst} areas with brand colours (${brand.palette.map((c) => c.hex).join(', ')}).`,
  );
}

function describeBox(b: Box): string {
  return `${Math.round(b.w)}×${Math.round(b.h)} at (${Math.round(b.x)}, ${Math.round(b.y)})`;
}

// ---- evaluation -----------------------------------------------------------------------------------

/** The checks that read pixels. */
const NEEDS_PIXELS: ReadonlySet<CheckId> = new Set(['size', 'logo_present', 'text_contrast', 'palette_coverage']);

/**
 * Scores an image against the brand kit. With the scene it was rendered from every check runs; without
 * one (a prompt-based provider drew it) the checks that need the layout are skipped, with the reason.
 * An image whose pixels could not be read is given as `{ unreadable: why }`: only the checks that need
 * no pixels run.
 */
export function evaluate(image: Pixels | { unreadable: string }, brand: BrandKit, target: SizeTarget, scene: Scene | null): Evaluation {
  const pixels = 'rgba' in image ? image : null;
  const run: Record<CheckId, (scene: Scene, pixels: Pixels) => Outcome> = {
    size: (_, p) => checkSize(target, p),
    safe_margin: (s) => checkSafeMargin(s),
    logo_present: (s, p) => checkLogo(s, p, brand),
    banned_phrases: (s) => checkBannedPhrases(s, brand),
    text_contrast: (s, p) => checkContrast(s, p, brand),
    palette_coverage: (_, p) => checkPalette(p, brand),
  };
  const checks: RubricCheck[] = [];
  const skipped: Evaluation['skipped'] = [];
  for (const id of CHECK_IDS) {
    const weight = checkWeight(brand, id);
    if (weight === 0) skipped.push({ id, reason: 'weighted 0 in the brand kit' });
    else if (scene === null && NEEDS_SCENE.has(id)) skipped.push({ id, reason: NO_SCENE_REASON });
    else if (pixels === null && NEEDS_PIXELS.has(id)) skipped.push({ id, reason: (image as { unreadable: string }).unreadable });
    else checks.push({ id, weight, ...run[id](scene!, pixels!) });
  }
  const passed = checks.filter((c) => c.passed);
  const totalWeight = checks.reduce((s, c) => s + c.weight, 0);
  const passedWeight = passed.reduce((s, c) => s + c.weight, 0);
  return {
    score: totalWeight > 0 ? Math.round((passedWeight / totalWeight) * 10_000) / 10_000 : 1,
    passed: passed.length,
    tested: checks.length,
    checks,
    skipped,
  };
}
