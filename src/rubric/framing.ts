// The checks on the frame: the image has the size asked for, and no text or logo the composer placed
// comes closer to an edge than the scene's safe margin.
import { logoElements, textElements, type Scene, type SizeTarget } from '../compose/scene.js';
import type { Pixels } from './index.js';
import { fail, pass, pct, type Outcome } from './outcome.js';

/**
 * Size: the image's aspect ratio within 3% of the one asked for, and its sides within 10% of the asked
 * length. A provider's 1024×1024 answer to a 1:1 request for 1080×1080 passes (same aspect, 5% smaller);
 * 1536×1024 (3:2) for a 4:3 request does not: its framing differs from what was asked.
 */
export const SIZE_ASPECT_TOLERANCE = 0.03;
export const SIZE_SCALE_TOLERANCE = 0.1;

export function checkSize(target: SizeTarget, image: Pixels): Outcome {
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

export function checkSafeMargin(scene: Scene): Outcome {
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
