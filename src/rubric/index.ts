// The brand rubric: scores a rendered image against a brand kit. Visual checks read the rendered pixels,
// not the scene's intentions, so a rendering bug or an unreadable colour choice shows up as a failed check.
// Each check lives with its kin (framing.ts, copy.ts, legibility.ts, palette-coverage.ts); this file
// decides which of them run on an image and weighs their verdicts into its score.
import { CHECK_IDS, checkWeight, type BrandKit, type CheckId } from '../brand.js';
import type { Scene, SizeTarget } from '../compose/scene.js';
import { checkBannedPhrases, checkTextFit } from './copy.js';
import { checkSafeMargin, checkSize } from './framing.js';
import { checkContrast, checkLogo } from './legibility.js';
import type { Outcome } from './outcome.js';
import { checkPalette } from './palette-coverage.js';

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
