// The seed of each variant of a request, so variants differ yet each reproduces from its own seed.

/**
 * The seed of variant `index` of a request seeded with `seed`. Variant 0 is the seed itself, so a single
 * image reproduces from the echoed seed; the others are hashed so neighbouring seeds do not share variants.
 */
export function variantSeed(seed: number, index: number): number {
  if (index === 0) return seed >>> 0;
  let h = (seed ^ Math.imul(index, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}
