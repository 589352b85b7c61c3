import { describe, expect, it } from 'vitest';
import { variantSeed } from '../../src/compose/prng.js';
import { createPrng } from '../../src/prng.js';

const draw = (seed: number, n = 5) => {
  const rng = createPrng(seed);
  return Array.from({ length: n }, () => rng.next());
};

describe('createPrng', () => {
  it('draws the pinned mulberry32 sequence, so every machine composes the same scene', () => {
    expect(draw(1, 3)).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
  });

  it('draws the same sequence for the same seed and a different one for another seed', () => {
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
  });

  it('treats seeds as unsigned 32-bit integers and stays within [0, 1)', () => {
    const values = draw(0xffff_ffff, 1000);
    expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
    expect(draw(0xffff_ffff)).toEqual(draw(-1));
  });

  it('keeps int() within its inclusive bounds', () => {
    const rng = createPrng(7);
    const seen = new Set(Array.from({ length: 500 }, () => rng.int(2, 4)));
    expect([...seen].sort()).toEqual([2, 3, 4]);
  });
});

describe('variantSeed', () => {
  it('uses the seed itself for the first variant and distinct seeds for the others', () => {
    expect(variantSeed(123, 0)).toBe(123);
    const seeds = [0, 1, 2, 3].map((i) => variantSeed(123, i));
    expect(new Set(seeds).size).toBe(4);
    expect(seeds.every((s) => Number.isInteger(s) && s >= 0 && s <= 0xffff_ffff)).toBe(true);
  });

  it("does not hand neighbouring seeds each other's variants", () => {
    expect(variantSeed(5, 1)).not.toBe(variantSeed(6, 0));
  });
});
