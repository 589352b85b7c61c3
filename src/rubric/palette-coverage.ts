// The palette check: the image is made of the brand's colours (dominant colours from palette.ts), its
// text and logo are set in them, and no two of its colours clash.
import type { BrandKit } from '../brand.js';
import { deltaE, parseHex, toLab } from '../color.js';
import { logoElements, textElements, type Scene } from '../compose/scene.js';
import type { Pixels } from './index.js';
import { fail, pass, pct, type Outcome } from './outcome.js';
import { clashingPairs, dominantColors } from './palette.js';

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

/**
 * Palette: the image's dominant colours, each compared with the nearest brand colour (or black or
 * white) in CIELAB; the share of the image that is brand colours must reach PALETTE_MIN_SHARE. With the
 * layout, text and logo must be set in brand colours too. And no two strong colours may clash along an
 * edge (see clashingPairs): a kit whose colours fight each other fails here.
 */
export function checkPalette(image: Pixels, brand: BrandKit, scene: Scene | null): Outcome {
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
