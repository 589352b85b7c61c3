import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GENERATOR_VERSION, renderScene } from '../../src/providers/builtin.js';
import productShot from '../../tools/product_shot.js';
import socialCard from '../../tools/social_card.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

const productArgs = productShot.input.parse({
  brief: 'A reusable water bottle that keeps drinks cold for 24 hours. Shot for the spring launch.',
  product_name: 'Aurora Flask',
});
const cardArgs = socialCard.input.parse({
  headline: 'Spring collection: light layers for longer days',
  body: 'Breathable linen and organic cotton, made to last.',
  channel: 'landscape',
});
const GOLDEN = {
  productShot: '96aff6e2949fea6205ac4576712f11a0c6799e30e2b4636b93c894897c2546c3',
  socialCard: '31bfdc4ce6a4dabb436ec89ab858ebec3e0c0d6a5a427a62f3f32f23572fa1ee',
};
const productScene = (seed: number) => productShot.compose(productArgs, seed)[0]!;
const cardScene = (seed: number) => socialCard.compose(cardArgs, seed)[0]!;

/** Width and height from the PNG's IHDR chunk, after checking the signature. */
function pngSize(png: Buffer): { width: number; height: number } {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  expect(png.toString('latin1', 12, 16)).toBe('IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe('renderScene', () => {
  // If these change, the bytes a request produces changed: bump GENERATOR_VERSION and re-pin.
  it(`renders the pinned bytes for ${GENERATOR_VERSION}`, () => {
    expect(sha256(renderScene(productScene(20240601)).png)).toBe(GOLDEN.productShot);
    expect(sha256(renderScene(cardScene(7)).png)).toBe(GOLDEN.socialCard);
  });

  it('renders the same scene to identical bytes every time, also after a JSON round trip', () => {
    const scene = cardScene(99);
    const first = renderScene(scene).png;
    expect(renderScene(scene).png.equals(first)).toBe(true);
    expect(renderScene(JSON.parse(JSON.stringify(scene))).png.equals(first)).toBe(true);
  });

  it('renders different bytes for different seeds', () => {
    expect(sha256(renderScene(productScene(1)).png)).not.toBe(sha256(renderScene(productScene(2)).png));
    expect(sha256(renderScene(cardScene(1)).png)).not.toBe(sha256(renderScene(cardScene(2)).png));
  });

  it('produces a PNG of the scene size with matching raw pixels', () => {
    for (const [scene, w, h] of [
      [productScene(3), 1080, 1080],
      [cardScene(3), 1200, 628],
    ] as const) {
      const image = renderScene(scene);
      expect(pngSize(image.png)).toEqual({ width: w, height: h });
      expect([image.width, image.height]).toEqual([w, h]);
      expect(image.rgba.length).toBe(w * h * 4);
    }
  });

  it('renders a 1080×1920 story well under a second', () => {
    const scene = socialCard.compose(socialCard.input.parse({ headline: 'Timing', channel: 'story' }), 5)[0]!;
    renderScene(scene);
    const started = performance.now();
    renderScene(scene);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
