// The checks that the brand's marks can be seen: the logo is there, stands out and has a readable size,
// and every text has the contrast against what it sits on that its size and weight need.
import type { BrandKit } from '../brand.js';
import { contrastRatio, distance, parseHex, requiredContrast, toHex } from '../color.js';
import { logoElements, textElements, type Box, type Scene } from '../compose/scene.js';
import type { Pixels } from './index.js';
import { fail, pass, pct, type Outcome } from './outcome.js';
import { clip, dominantColor, eachPixel } from './region.js';

/** Share of the logo box that must stand out from what is around it. */
export const LOGO_MIN_INK = 0.03;
/** The logo's height as a share of the image's short side: smaller is illegible on a phone... */
export const LOGO_MIN_HEIGHT = 0.028;
/** ...and the share of the image it may cover before it crowds out the picture. */
export const LOGO_MAX_AREA = 0.06;

const ratio = (r: number) => `${(Math.floor(r * 100) / 100).toFixed(2)}:1`;

export function checkLogo(scene: Scene, image: Pixels, brand: BrandKit): Outcome {
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

export function checkContrast(scene: Scene, image: Pixels, brand: BrandKit): Outcome {
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

function describeBox(b: Box): string {
  return `${Math.round(b.w)}×${Math.round(b.h)} at (${Math.round(b.x)}, ${Math.round(b.y)})`;
}
