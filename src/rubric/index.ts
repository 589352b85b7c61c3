// The brand rubric: scores a rendered image against a brand kit. Visual checks read the rendered pixels,
// not the scene's intentions, so a rendering bug or an unreadable colour choice shows up as a failed check.
import { CHECK_IDS, checkWeight, type BrandKit, type CheckId } from '../brand.js';
import { contrastRatio, deltaE, distance, parseHex, requiredContrast, toHex, toLab, type Rgb } from '../color.js';
import { readableSize, splitsAWord } from '../compose/layout.js';
import { logoElements, textElements, type Box, type Scene, type SizeTarget } from '../compose/scene.js';
import { clashingPairs, dominantColors } from './palette.js';

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
const NEEDS_SCENE: ReadonlySet<CheckId> = new Set([
  'safe_margin',
  'logo_present',
  'banned_phrases',
  'text_contrast',
  'text_fit',
]);
const NO_SCENE_REASON =
  'needs the composed layout; this image was drawn by a prompt-based provider, which does not say where text and logo are';

/**
 * Size: the image's aspect ratio within 3% of the one asked for, and its sides within 10% of the asked
 * length. A provider's 1024×1024 answer to a 1:1 request for 1080×1080 passes (same aspect, 5% smaller);
 * 1536×1024 (3:2) for a 4:3 request does not: its framing differs from what was asked.
 */
export const SIZE_ASPECT_TOLERANCE = 0.03;
export const SIZE_SCALE_TOLERANCE = 0.1;
/** A dominant colour this close (ΔE) to a brand colour counts as that brand colour. */
export const PALETTE_DELTA_E = 12;
/** Share of the image that must be brand colours... */
export const PALETTE_MIN_SHARE = 0.85;
/** ...and no colour this large may be another: a maroon product on a cream ground is off-brand however small. */
export const PALETTE_SALIENT_SHARE = 0.03;
/** Black and white belong to every palette: type and paper in any brand's guidelines. */
const NEUTRALS = [
  { hex: '#000000', role: 'neutral' },
  { hex: '#FFFFFF', role: 'neutral' },
] as const;
/** A text or logo colour this close (ΔE) to a brand colour is that brand colour. */
export const INK_DELTA_E = 6;
/** Share of the logo box that must stand out from what is around it. */
export const LOGO_MIN_INK = 0.03;
/** The logo's height as a share of the image's short side: smaller is illegible on a phone... */
export const LOGO_MIN_HEIGHT = 0.028;
/** ...and the share of the image it may cover before it crowds out the picture. */
export const LOGO_MAX_AREA = 0.06;

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
  const asked = `${label} asks for ${width}×${height}`;
  if (image.width === width && image.height === height) return pass(`${got} rendered; ${asked}`);
  const aspectOff = Math.abs(image.width / image.height / (width / height) - 1);
  const scale = Math.sqrt((image.width * image.height) / (width * height));
  const within =
    `aspect ${(image.width / image.height).toFixed(3)} vs ${(width / height).toFixed(3)} (${pct(aspectOff)} off, ` +
    `tolerance ${pct(SIZE_ASPECT_TOLERANCE)}), scale ${scale.toFixed(2)} (tolerance ${(1 - SIZE_SCALE_TOLERANCE).toFixed(2)}–` +
    `${(1 + SIZE_SCALE_TOLERANCE).toFixed(2)})`;
  const scaleOk = Math.abs(scale - 1) <= SIZE_SCALE_TOLERANCE + 1e-9;
  if (aspectOff <= SIZE_ASPECT_TOLERANCE + 1e-9 && scaleOk) return pass(`${got} rendered; ${asked}: ${within}`);
  return fail(
    `${got} rendered, but ${asked}: ${within}`,
    aspectOff > SIZE_ASPECT_TOLERANCE
      ? `Draw it at the aspect ratio asked for (${width}×${height}), or crop it to that ratio; a different ratio changes the framing.`
      : `Draw it at ${width}×${height}, or within ${pct(SIZE_SCALE_TOLERANCE)} of it.`,
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
  const w = inner.x1 - inner.x0;
  const h = inner.y1 - inner.y0;
  if (w <= 0 || h <= 0) return fail(`logo box ${describeBox(logo.box)} lies outside the image`, addLogo);
  // What surrounds the logo is its background; the logo is whatever inside its box differs from that.
  const ring = clip(image, { x: logo.box.x - 8, y: logo.box.y - 8, w: logo.box.w + 16, h: logo.box.h + 16 });
  const around = dominantColor((fn) => eachPixel(image, ring, fn, inner)).color;
  let ink = 0;
  eachPixel(image, inner, (c) => {
    if (distance(c, around) > 40) ink++;
  });
  const share = ink / (w * h);
  const short = Math.min(image.width, image.height);
  const tall = h / short;
  const area = (w * h) / (image.width * image.height);
  const seen =
    `logo "${logo.text}" ${w}×${h}px: ${pct(tall)} of the short side tall (needs ≥ ${pct(LOGO_MIN_HEIGHT)}), ` +
    `${pct(area)} of the image (at most ${pct(LOGO_MAX_AREA)}), ${pct(share)} of its box stands out from ${toHex(around)}`;
  if (share < LOGO_MIN_INK) return fail(`${seen}: not visible (needs ${pct(LOGO_MIN_INK)})`, addLogo);
  if (tall < LOGO_MIN_HEIGHT) {
    const px = Math.ceil(LOGO_MIN_HEIGHT * short);
    return fail(
      `${seen}: too small to read`,
      `Draw the logo at least ${px}px tall; a shorter logo_text leaves it more room.`,
    );
  }
  if (area > LOGO_MAX_AREA)
    return fail(
      `${seen}: it crowds out the picture`,
      `Draw the logo smaller, under ${pct(LOGO_MAX_AREA)} of the image.`,
    );
  return pass(seen);
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
        const better = brand.palette.map((c) => c.hex).find((h) => contrastRatio(parseHex(h), x.bg) >= x.need);
        const alt = contrastRatio({ r: 17, g: 17, b: 17 }, x.bg) >= x.need ? '#111111' : '#FFFFFF';
        return `Set ${x.t.id} in ${better ?? alt} (≥ ${x.need}:1 on ${bgHex}) or put it on a solid panel`;
      })
      .join('; ') + '.',
  );
}

/**
 * Fit: every piece of copy the request asked for is set whole (not cut with an ellipsis, not left out,
 * no word broken across lines), at a size that reads, and inside the canvas. Text too long for its box
 * fails here, whoever composed it.
 */
function checkTextFit(scene: Scene, image: Pixels | null): Outcome {
  const texts = textElements(scene);
  const short = Math.min(scene.width, scene.height);
  const readable = readableSize(short);
  const problems: string[] = [];
  const fixes: string[] = [];
  for (const { id, text } of scene.copy ?? []) {
    const words = text.split(/\s+/).filter(Boolean);
    const set = texts.find((t) => t.id === id);
    if (set === undefined) {
      problems.push(`${id} left out: no room for its ${words.length} words`);
      fixes.push(`Shorten the copy above the ${id}, or give the ${id} fewer words`);
      continue;
    }
    const shown = set.lines.join(' / ');
    if (shown.endsWith('…')) {
      // Whole words shown, counted by their letters: a word broken across lines still counts once.
      let letters = set.lines.join('').replace(/[\s…]/g, '').length;
      let kept = 0;
      for (const word of words) {
        letters -= word.length;
        if (letters < 0) break;
        kept++;
      }
      problems.push(`${id} cut after ${kept} of its ${words.length} words ("${shown}")`);
      fixes.push(`Shorten the ${id} to about ${Math.max(1, kept)} words, or choose a size with more room`);
    } else if (splitsAWord(text, set.lines)) {
      const broken = words.find((word) => !set.lines.some((line) => line.split(' ').includes(word))) ?? words[0]!;
      problems.push(`${id} breaks "${broken}" across lines`);
      fixes.push(`Use a shorter ${id}, or shorter words in it`);
    }
  }
  for (const t of texts) {
    if (t.fontSize < readable) {
      problems.push(
        `${t.id} set at ${t.fontSize}px, under the ${readable}px that reads at ${scene.width}×${scene.height}`,
      );
      fixes.push(`Shorten the ${t.id} so it can be set larger`);
    }
    const over = {
      left: -t.box.x,
      top: -t.box.y,
      right: t.box.x + t.box.w - scene.width,
      bottom: t.box.y + t.box.h - scene.height,
    };
    for (const [side, px] of Object.entries(over)) {
      if (px <= 0) continue;
      const inked =
        image === null
          ? ''
          : inkAtEdge(image, t.box, t.color, side as keyof typeof over)
            ? ': its letters are cut off'
            : '';
      problems.push(`${t.id} runs ${Math.ceil(px)}px past the ${side} edge${inked}`);
      fixes.push(`Move the ${t.id} inside the canvas, or shorten it`);
    }
  }
  const checked = `${texts.length} text element(s)` + (scene.copy ? `, ${scene.copy.length} piece(s) of copy` : '');
  if (problems.length === 0) {
    const smallest = texts.length > 0 ? Math.min(...texts.map((t) => t.fontSize)) : null;
    return pass(
      `${checked} set whole inside the canvas` +
        (smallest === null ? '' : `; smallest type ${smallest}px (needs ≥ ${readable}px)`),
    );
  }
  return fail(problems.join('; '), `${fixes.join('; ')}.`);
}

/** Whether pixels of the text's colour touch the image edge along the text's span: the edge cuts it. */
function inkAtEdge(image: Pixels, box: Box, color: string, side: 'left' | 'top' | 'right' | 'bottom'): boolean {
  const span = clip(image, box);
  const strip: Rect =
    side === 'left'
      ? { ...span, x0: 0, x1: Math.min(2, image.width) }
      : side === 'right'
        ? { ...span, x0: Math.max(0, image.width - 2), x1: image.width }
        : side === 'top'
          ? { ...span, y0: 0, y1: Math.min(2, image.height) }
          : { ...span, y0: Math.max(0, image.height - 2), y1: image.height };
  const ink = parseHex(color);
  let n = 0;
  eachPixel(image, strip, (c) => {
    if (distance(c, ink) <= 40) n++;
  });
  return n >= 2;
}

/**
 * Palette: the image's dominant colours, each compared with the nearest brand colour (or black or
 * white) in CIELAB; the share of the image that is brand colours must reach PALETTE_MIN_SHARE. With the
 * layout, text and logo must be set in brand colours too. And no two strong colours may clash along an
 * edge (see clashingPairs): a kit whose colours fight each other fails here.
 */
function checkPalette(image: Pixels, brand: BrandKit, scene: Scene | null): Outcome {
  const palette = [...brand.palette, ...NEUTRALS].map((c) => ({ ...c, lab: toLab(parseHex(c.hex)) }));
  const nearest = (lab: ReturnType<typeof toLab>) =>
    palette.map((p) => ({ hex: p.hex, role: p.role, d: deltaE(lab, p.lab) })).reduce((a, b) => (b.d < a.d ? b : a));
  const colors = dominantColors(image).map((c) => ({ ...c, near: nearest(c.lab) }));
  const onShare = colors.filter((c) => c.near.d <= PALETTE_DELTA_E).reduce((sum, c) => sum + c.share, 0);
  const shown = colors.filter((c) => c.share >= 0.02).slice(0, 5);
  const listed = shown
    .map((c) => `${c.hex} ${pct(c.share)} (ΔE ${c.near.d.toFixed(1)} to ${c.near.role} ${c.near.hex})`)
    .join(', ');
  const measured =
    `${pct(onShare)} of the image within ΔE ${PALETTE_DELTA_E} of a brand colour (needs ≥ ${pct(PALETTE_MIN_SHARE)}, ` +
    `and every colour over ${pct(PALETTE_SALIENT_SHARE)}); ` +
    `dominant colours ${listed || 'none over 2%'}`;
  const offInk =
    scene === null
      ? []
      : [
          ...textElements(scene).map((t) => ({ name: t.id, hex: t.color })),
          ...logoElements(scene).map((l) => ({ name: 'logo', hex: l.color })),
        ]
          .map((ink) => ({ ...ink, near: nearest(toLab(parseHex(ink.hex))) }))
          .filter((ink) => ink.near.d > INK_DELTA_E);
  const problems: string[] = [];
  const fixes: string[] = [];
  const salient = colors.filter((c) => c.share >= PALETTE_SALIENT_SHARE && c.near.d > PALETTE_DELTA_E);
  if (onShare < PALETTE_MIN_SHARE || salient.length > 0) {
    const worst = salient[0] ?? colors.find((c) => c.near.d > PALETTE_DELTA_E);
    problems.push(
      worst
        ? `the largest off-palette colour is ${worst.hex} (${pct(worst.share)}, ΔE ${worst.near.d.toFixed(1)} to ${worst.near.hex})`
        : 'the image is spread over many colours',
    );
    fixes.push(
      `Replace ${worst ? `the ${worst.hex} areas` : 'the off-palette areas'} with brand colours (${brand.palette.map((c) => c.hex).join(', ')})`,
    );
  }
  if (offInk.length > 0) {
    problems.push(
      offInk
        .map(
          (i) =>
            `${i.name} is set in ${i.hex.toUpperCase()}, not a brand colour (nearest ${i.near.hex}, ΔE ${i.near.d.toFixed(1)})`,
        )
        .join('; '),
    );
    fixes.push(
      "Add a text colour to the kit that reads on its background (4.5:1), or a background the kit's text colour reads on",
    );
  }
  const clashes = clashingPairs(image, colors);
  if (clashes.length > 0) {
    problems.push(
      clashes
        .map(
          ({ a, b, edge }) =>
            `${a.hex} meets ${b.hex} along ${pct(edge)} of the image: both strong, equally light ` +
            `(L ${a.lab.l.toFixed(0)} and ${b.lab.l.toFixed(0)}), far apart in hue, so the edge vibrates`,
        )
        .join('; '),
    );
    fixes.push('Put a light or dark brand colour between clashing colours, or use one of them lighter or darker');
  }
  if (problems.length === 0) return pass(measured);
  return fail(`${measured}; ${problems.join('; ')}`, `${fixes.join('; ')}.`);
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
export function evaluate(
  image: Pixels | { unreadable: string },
  brand: BrandKit,
  target: SizeTarget,
  scene: Scene | null,
): Evaluation {
  const pixels = 'rgba' in image ? image : null;
  // NEEDS_SCENE and NEEDS_PIXELS say which of the two each check may rely on being there.
  const run: Record<CheckId, (scene: Scene | null, pixels: Pixels | null) => Outcome> = {
    size: (_, p) => checkSize(target, p!),
    safe_margin: (s) => checkSafeMargin(s!),
    logo_present: (s, p) => checkLogo(s!, p!, brand),
    banned_phrases: (s) => checkBannedPhrases(s!, brand),
    text_contrast: (s, p) => checkContrast(s!, p!, brand),
    text_fit: (s, p) => checkTextFit(s!, p),
    palette_coverage: (s, p) => checkPalette(p!, brand, s),
  };
  const checks: RubricCheck[] = [];
  const skipped: Evaluation['skipped'] = [];
  for (const id of CHECK_IDS) {
    const weight = checkWeight(brand, id);
    if (weight === 0) skipped.push({ id, reason: 'weighted 0 in the brand kit' });
    else if (scene === null && NEEDS_SCENE.has(id)) skipped.push({ id, reason: NO_SCENE_REASON });
    else if (pixels === null && NEEDS_PIXELS.has(id))
      skipped.push({ id, reason: (image as { unreadable: string }).unreadable });
    else checks.push({ id, weight, ...run[id](scene, pixels) });
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
